package bench

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Plots are drawn with gonum.org/v1/plot: pure Go (the binary stays
// static, no cgo, no gnuplot or Python on the host), writes PNG directly,
// and has box plots and log axes, which lag spanning 10 ms to 60 s needs.

// plotGroup is one figure: the distribution rows of some scenarios.
type plotGroup struct {
	file, title string
	scenarios   []string
	// quantity and unit name the axis (default "lag"); each sample is one
	// of what (default "writes replicated"). linear drops the log scale
	// (for figures within one decade).
	quantity, what string
	linear         bool
	// byMetric labels rows by metric (their cases repeat).
	byMetric bool
}

var plotGroups = []plotGroup{
	{file: "lag-by-mode", title: "write-to-replica lag per trigger mode (log scale)", scenarios: []string{"floor", "lag"}},
	{file: "lag-by-workload", title: "write-to-replica lag per workload and rate (log scale)", scenarios: []string{"floor", "rates", "workloads", "scale"}},
	{file: "failover", title: "failover time, return of the dead host, handoff downtime", scenarios: []string{"failover", "handoff"},
		quantity: "time", what: "runs", linear: true, byMetric: true},
}

// writePlots draws, per group with data, a box plot and a CDF; it returns
// the file names written.
func writePlots(r *Report, dir string) ([]string, error) {
	var files []string
	for _, g := range plotGroups {
		var rows []Row
		for _, row := range r.Rows {
			if slices.Contains(g.scenarios, row.Scenario) && row.Status == StatusOK && positive(row.Samples) && row.Unit == "ms" {
				rows = append(rows, row)
			}
		}
		if len(rows) == 0 {
			continue
		}
		box, err := boxPlot(g, rows)
		if err != nil {
			return files, err
		}
		name := g.file + ".png"
		if err := box.Save(vg.Length(max(16, 2.2*float64(len(rows))))*vg.Centimeter, 12*vg.Centimeter, filepath.Join(dir, name)); err != nil {
			return files, err
		}
		files = append(files, name)
		cdf, err := cdfPlot(g, rows)
		if err != nil {
			return files, err
		}
		name = g.file + "-cdf.png"
		if err := cdf.Save(20*vg.Centimeter, 12*vg.Centimeter, filepath.Join(dir, name)); err != nil {
			return files, err
		}
		files = append(files, name)
	}
	return files, nil
}

func positive(s []float64) bool {
	if len(s) == 0 {
		return false
	}
	for _, v := range s {
		if !(v > 0) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}

func label(g plotGroup, row Row) string {
	switch {
	case row.Scenario == "floor":
		return "FLOOR"
	case g.byMetric:
		return row.Metric
	}
	return row.Case
}

func (g plotGroup) axis() string {
	if g.quantity == "" {
		return "lag (ms)"
	}
	return g.quantity + " (ms)"
}

func boxPlot(g plotGroup, rows []Row) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = g.title
	p.Y.Label.Text = g.axis() + ", box = quartiles, dots = outliers"
	if !g.linear {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	var names []string
	for i, row := range rows {
		b, err := plotter.NewBoxPlot(vg.Points(24), float64(i), plotter.Values(row.Samples))
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", row.Scenario, row.Case, err)
		}
		b.FillColor = plotutil.Color(i)
		p.Add(b)
		names = append(names, fmt.Sprintf("%s\np50 %s", label(g, row), fnum(row.P50)))
	}
	p.NominalX(names...)
	p.Add(plotter.NewGrid())
	return p, nil
}

func cdfPlot(g plotGroup, rows []Row) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = g.title + ": CDF"
	p.X.Label.Text = g.axis()
	what := g.what
	if what == "" {
		what = "writes replicated"
	}
	p.Y.Label.Text = "fraction of " + what
	if !g.linear {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top = false
	p.Legend.Left = false
	for i, row := range rows {
		s := slices.Clone(row.Samples)
		slices.Sort(s)
		pts := make(plotter.XYs, len(s))
		for j, v := range s {
			pts[j] = plotter.XY{X: v, Y: float64(j+1) / float64(len(s))}
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		l.Dashes = plotutil.Dashes(i / len(plotutil.DefaultColors))
		p.Add(l)
		p.Legend.Add(label(g, row), l)
	}
	p.Add(plotter.NewGrid())
	return p, nil
}
