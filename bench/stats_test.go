package bench

import (
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	seq := make([]float64, 100)
	for i := range seq {
		seq[99-i] = float64(i + 1) // 100..1, unsorted on purpose
	}
	for _, tc := range []struct {
		name string
		in   []float64
		want Summary
	}{
		{"empty", nil, Summary{}},
		{"one", []float64{7}, Summary{N: 1, P50: 7, P95: 7, P99: 7, Max: 7}},
		{"1..100", seq, Summary{N: 100, P50: 50, P95: 95, P99: 99, Max: 100}},
		{"two", []float64{2, 1}, Summary{N: 2, P50: 1, P95: 2, P99: 2, Max: 2}},
		{"non-finite dropped", []float64{math.NaN(), 3, math.Inf(1)}, Summary{N: 1, P50: 3, P95: 3, P99: 3, Max: 3}},
	} {
		if got := Summarize(tc.in); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
