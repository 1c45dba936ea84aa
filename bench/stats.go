package bench

import (
	"math"
	"slices"
)

// Summary is a distribution reduced to what the report shows.
type Summary struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Summarize computes nearest-rank percentiles: each is a value that was
// measured, never an interpolation between two. Non-finite samples are
// dropped (they would poison every percentile); no samples give N = 0.
func Summarize(samples []float64) Summary {
	s := make([]float64, 0, len(samples))
	for _, v := range samples {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			s = append(s, v)
		}
	}
	if len(s) == 0 {
		return Summary{}
	}
	slices.Sort(s)
	return Summary{N: len(s), P50: rank(s, 50), P95: rank(s, 95), P99: rank(s, 99), Max: s[len(s)-1]}
}

// rank is the nearest-rank p-th percentile of sorted s: the smallest value
// with at least p% of the samples at or below it.
func rank(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
