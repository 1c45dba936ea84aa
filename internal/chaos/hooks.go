package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/agentpair"
)

// HookKiller SIGKILLs a node's start or stop hook while it runs. Wrap
// rewrites the hook in the node's config (before its agent starts) so that
// each run records its shell's pid and lingers a second before its work;
// Arm kills the shell of the next run, once.
type HookKiller struct {
	Node  *agentpair.Node
	Hook  string // "start" or "stop"
	pidAt string

	mu     sync.Mutex
	killed chan int
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// WrapHook wraps n's hook ("start" or "stop") of its first dataset.
func WrapHook(n *agentpair.Node, hook string) (*HookKiller, error) {
	c, err := config.Load(n.Config)
	if err != nil {
		return nil, err
	}
	if len(c.Datasets) == 0 {
		return nil, fmt.Errorf("%s: no dataset", n.Name)
	}
	d := c.Datasets[0]
	orig := d.Start
	if hook == "stop" {
		orig = d.Stop
	} else if hook != "start" {
		return nil, fmt.Errorf("hook %q: want start or stop", hook)
	}
	if orig == "" {
		return nil, fmt.Errorf("%s has no %s hook", n.Name, hook)
	}
	k := &HookKiller{Node: n, Hook: hook, pidAt: filepath.Join(n.Dir, hook+"-hook.pid")}
	wrapped := fmt.Sprintf("echo $$ > %s; sleep 1; %s", k.pidAt, orig)
	if err := config.SetKeys(n.Config, config.DatasetSection(d.Name), hook, wrapped); err != nil {
		return nil, err
	}
	return k, nil
}

// Effect is the executor's name of the hook's effect, as logged.
func (k *HookKiller) Effect(dataset string) string { return k.Hook + "(" + dataset + ")" }

// Arm kills the first run of the hook that starts from now on; the pid
// killed arrives on the returned channel. A second Arm disarms the first.
func (k *HookKiller) Arm() (<-chan int, error) {
	k.Disarm()
	if err := os.Remove(k.pidAt); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	killed := make(chan int, 1)
	k.mu.Lock()
	k.cancel, k.killed = cancel, killed
	k.mu.Unlock()
	k.wg.Go(func() {
		for ctx.Err() == nil {
			b, err := os.ReadFile(k.pidAt)
			pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
			if err == nil && perr == nil && pid > 0 {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed <- pid
				}
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	return killed, nil
}

// Disarm stops waiting for a run to kill.
func (k *HookKiller) Disarm() {
	k.mu.Lock()
	cancel := k.cancel
	k.cancel = nil
	k.mu.Unlock()
	if cancel != nil {
		cancel()
		k.wg.Wait()
	}
}

// Retried waits (until ctx ends) for the node's report that the hook's
// effect failed, and for the same effect done on a later try, from log
// mark on.
func (k *HookKiller) Retried(ctx context.Context, mark int, dataset string) (failed, done agentpair.Record, err error) {
	effect := k.Effect(dataset)
	failed, err = k.Node.Log.Wait(ctx, mark, func(r agentpair.Record) bool {
		return r.Msg() == "effect failed" && r.Str("effect") == effect
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: no failed %s reported: %w", k.Node.Name, effect, err)
	}
	done, err = k.Node.Log.Wait(ctx, mark, func(r agentpair.Record) bool {
		return r.Msg() == "effect done" && r.Str("effect") == effect && r.Num("try") > 1
	})
	if err != nil {
		return failed, nil, fmt.Errorf("%s: %s not done on a retry: %w", k.Node.Name, effect, err)
	}
	return failed, done, nil
}
