// Package failover will hold the failure detector, the role and epoch state
// machine, the floating address (netlink plus ARP/NA announcements), service
// hooks, the witness probe and planned handoff. Nothing is implemented here
// yet; see the README's status table.
package failover
