package callcenter

import (
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var policyColors = []color.Color{
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, // predictive
	color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}, // progressive
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // ratio 2
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // vici HARD_LIMIT
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, // vici AVERAGE
}

// WriteChart draws the median occupancy and the worst seed's shift abandon
// rate per scenario and policy, one panel each, the 3 % cap dashed, as a PNG.
func (rep Report) WriteChart(path string) error {
	var names []string
	var scs []Scenario
	for _, c := range rep.Cells {
		if c.Policy == rep.Config.Policies[0] {
			scs = append(scs, c.Scenario)
			names = append(names, c.Scenario.Name())
		}
	}
	panel := func(title, ylabel string, value func(Cell) float64, cap float64) (*plot.Plot, error) {
		p := plot.New()
		p.Title.Text = title
		p.Y.Label.Text = ylabel
		p.Legend.Top = true
		w := vg.Points(7)
		for i, pol := range rep.Config.Policies {
			vals := make(plotter.Values, len(scs))
			for j, sc := range scs {
				for _, c := range rep.Cells {
					if c.Scenario == sc && c.Policy == pol {
						vals[j] = 100 * value(c)
					}
				}
			}
			b, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return nil, err
			}
			b.Color = policyColors[i%len(policyColors)]
			b.LineStyle.Width = 0
			b.Offset = w * vg.Length(i-len(rep.Config.Policies)/2)
			p.Add(b)
			p.Legend.Add(string(pol), b)
		}
		if cap > 0 {
			l, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: cap}, {X: float64(len(scs)) - 0.5, Y: cap}})
			if err != nil {
				return nil, err
			}
			l.Color = color.Black
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(l)
		}
		p.NominalX(names...)
		p.X.Tick.Label.Rotation = 0.6
		p.X.Tick.Label.XAlign = draw.XRight
		p.X.Tick.Label.YAlign = draw.YCenter
		return p, nil
	}
	occ, err := panel("Occupancy (median of seeds): (talk + wrap) ÷ logged-in time", "occupancy %",
		func(c Cell) float64 { return c.MedianOccupancy }, 0)
	if err != nil {
		return err
	}
	occ.Y.Min, occ.Y.Max = 0, 118 // room for the legend above the bars
	ab, err := panel("Shift abandon rate (worst seed); dashed: the 3 % cap", "abandoned ÷ answered %",
		func(c Cell) float64 { return c.MaxAbandon }, 3)
	if err != nil {
		return err
	}
	const width, height = 36 * vg.Centimeter, 30 * vg.Centimeter
	img := vgimg.New(width, height)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 2 * vg.Millimeter}
	plots := [][]*plot.Plot{{occ}, {ab}}
	canvases := plot.Align(plots, tiles, dc)
	occ.Draw(canvases[0][0])
	ab.Draw(canvases[1][0])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
