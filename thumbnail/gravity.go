package thumbnail

import (
	"image"
	"math"
)

// cropFor places an output's crop where its gravity says, within its scaled, upright
// image. Only cover crops anything. center is planGeometry's own crop and focal is
// arithmetic, shared by both engines; attention and entropy look at the pixels, which
// each engine does its own way: measure is asked only for those.
func cropFor(o *output, measure func() image.Rectangle) image.Rectangle {
	g := o.geometry
	if g.Crop.Size() == g.Scale {
		return g.Crop
	}
	switch o.spec.Gravity {
	case GravityFocal:
		return focalCrop(g, *o.spec.Focal)
	case GravityAttention, GravityEntropy:
		return measure()
	}
	return g.Crop
}

// focalCrop centres g's crop on a point given in fractions of the upright source, as
// near as the scaled image allows: cover scales both sides alike, so the point keeps
// its fractions in the scaled image.
func focalCrop(g geometry, p Point) image.Rectangle {
	return centredCrop(g.Scale, g.Crop.Size(), p.X*float64(g.Scale.X), p.Y*float64(g.Scale.Y))
}

// centredCrop is the crop of the given size within an image of size scale whose
// centre is nearest (cx, cy), in pixels.
func centredCrop(scale, size image.Point, cx, cy float64) image.Rectangle {
	place := func(centre float64, length, room int) int {
		return min(max(int(math.Round(centre-float64(length)/2)), 0), room-length)
	}
	corner := image.Pt(place(cx, size.X, scale.X), place(cy, size.Y, scale.Y))
	return image.Rectangle{Min: corner, Max: corner.Add(size)}
}

// flatDeviation is the standard deviation of a colour channel (0..255) below which
// an image has nothing for attention or entropy to prefer: its crop stays in the
// centre. Both engines use it (libvips's smartcrop would otherwise answer the
// top-left corner for a flat image). Sensor noise in an evenly lit sky measures 1-3.
const flatDeviation = 2.0

// analysisSide is the longest side of the copy the pure-Go engine measures interest
// on: interest is a matter of regions, not pixels, and a copy this small costs well
// under a millisecond to measure (BENCHMARKS.md, "Several outputs from one decode").
const analysisSide = 128

// smartCrop is the pure-Go engine's attention and entropy gravity: it places g's crop
// on the scaled, upright image img where a measure over a small copy finds the most
// interest. A cover crop keeps the whole of one side and slides along the other, so
// the search is along that side only: every position of the window is scored and
// the window goes to the middle of the best run of positions.
//
//   - attention scores each pixel by what draws the eye, as libvips's attention does:
//     edges, saturated colour and skin tones; a window scores the sum.
//   - entropy scores a window by the Shannon entropy of its tones (a 32-bin luma
//     histogram): the busiest region.
//
// A flat image (flatDeviation) keeps the centre crop.
func smartCrop(img *image.RGBA, g geometry, gravity Gravity) image.Rectangle {
	k := analysisShrink(img.Rect.Size())
	small := img
	if k > 1 {
		small = boxShrink(img, k).(*image.RGBA)
	}
	// Where the copy's first block starts in img: boxShrink drops the remainder evenly.
	origin := image.Pt(img.Rect.Dx()%k/2, img.Rect.Dy()%k/2)
	return interestCrop(small, k, origin, g, gravity)
}

// analysisShrink is the block size that brings an image of size within
// analysisSide.
func analysisShrink(size image.Point) int {
	return max(1, (max(size.X, size.Y)+analysisSide-1)/analysisSide)
}

// interestCrop places g's crop where small, a copy of the scaled image
// shrunk by k (its first block at origin), is most interesting for gravity;
// both engines measure this way. A flat copy keeps the centre crop.
func interestCrop(small *image.RGBA, k int, origin image.Point, g geometry, gravity Gravity) image.Rectangle {
	size := g.Crop.Size()
	m := newInterestMap(small)
	if m.deviation() < flatDeviation {
		return g.Crop
	}
	crop := g.Crop
	for axis := range 2 {
		scale, length := pick(g.Scale, axis), pick(size, axis)
		if scale == length {
			continue
		}
		n := pick(image.Pt(m.w, m.h), axis)
		window := min(max(int(math.Round(float64(length)/float64(k))), 1), n)
		var scores []float64
		if gravity == GravityEntropy {
			scores = m.entropyScores(axis, window)
		} else {
			scores = m.attentionScores(axis, window)
		}
		if len(scores) == 1 {
			continue // the window is the whole copy: the centre is as good as any
		}
		p := bestWindow(scores)
		var start int
		switch p {
		case 0:
			start = 0
		case len(scores) - 1:
			start = scale - length
		default:
			centre := float64(pick(origin, axis)) + (float64(p)+float64(window)/2)*float64(k)
			start = min(max(int(math.Round(centre-float64(length)/2)), 0), scale-length)
		}
		if axis == 0 {
			crop.Min.X, crop.Max.X = start, start+length
		} else {
			crop.Min.Y, crop.Max.Y = start, start+length
		}
	}
	return crop
}

func pick(p image.Point, axis int) int {
	if axis == 0 {
		return p.X
	}
	return p.Y
}

// bestWindow is where a window goes, given the score of each start position: the
// middle of the run of near-best positions around the best one. When the interesting
// part is smaller than the window every position that holds all of it scores alike,
// and the middle of them centres it; positions that all score alike give the centre.
func bestWindow(scores []float64) int {
	best, low := 0, scores[0]
	for i, s := range scores {
		if s > scores[best] {
			best = i
		}
		low = min(low, s)
	}
	tolerance := 0.01 * (scores[best] - low)
	first, last := best, best
	for first > 0 && scores[first-1] >= scores[best]-tolerance {
		first--
	}
	for last < len(scores)-1 && scores[last+1] >= scores[best]-tolerance {
		last++
	}
	return (first + last) / 2
}

// interestMap is a small copy's pixels as the measures read them, flattened onto
// white.
type interestMap struct {
	w, h    int
	r, g, b []float64 // 0..255
	luma    []float64 // 0..255
}

func newInterestMap(img *image.RGBA) *interestMap {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	m := &interestMap{w: w, h: h, r: make([]float64, w*h), g: make([]float64, w*h), b: make([]float64, w*h), luma: make([]float64, w*h)}
	for y := range h {
		row := img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):]
		for x := range w {
			i := y*w + x
			white := 255 - float64(row[4*x+3])
			m.r[i], m.g[i], m.b[i] = float64(row[4*x])+white, float64(row[4*x+1])+white, float64(row[4*x+2])+white
			m.luma[i] = 0.299*m.r[i] + 0.587*m.g[i] + 0.114*m.b[i]
		}
	}
	return m
}

// deviation is the largest standard deviation of the three colour channels.
func (m *interestMap) deviation() float64 {
	var most float64
	for _, channel := range [][]float64{m.r, m.g, m.b} {
		var sum, squares float64
		for _, v := range channel {
			sum += v
			squares += v * v
		}
		n := float64(len(channel))
		most = max(most, math.Sqrt(max(0, squares/n-(sum/n)*(sum/n))))
	}
	return most
}

// attentionScores is, for each start position of a window along axis, the sum of
// the pixels' attention inside it (the window spans the whole other side). A pixel's
// attention is libvips's: in CIELAB, the Sobel edge strength of L, plus 255 for a
// skin tone (a in 3..22, b in 4..31, L at least 15), plus 255 for a saturated colour
// (chroma above 60).
func (m *interestMap) attentionScores(axis, window int) []float64 {
	lightness := make([]float64, m.w*m.h)
	n := m.w
	if axis == 1 {
		n = m.h
	}
	line := make([]float64, n) // the attention summed across the axis
	add := func(x, y int, score float64) {
		if axis == 0 {
			line[x] += score
		} else {
			line[y] += score
		}
	}
	for i := range lightness {
		l, a, b := lab(m.r[i], m.g[i], m.b[i])
		lightness[i] = l
		var score float64
		if l >= 15 && a >= 3 && a <= 22 && b >= 4 && b <= 31 {
			score += 255 // skin
		}
		if a*a+b*b > 60*60 {
			score += 255 // saturated
		}
		add(i%m.w, i/m.w, score)
	}
	at := func(x, y int) float64 { return lightness[min(max(y, 0), m.h-1)*m.w+min(max(x, 0), m.w-1)] }
	for y := range m.h {
		for x := range m.w {
			gx := at(x+1, y-1) + 2*at(x+1, y) + at(x+1, y+1) - at(x-1, y-1) - 2*at(x-1, y) - at(x-1, y+1)
			gy := at(x-1, y+1) + 2*at(x, y+1) + at(x+1, y+1) - at(x-1, y-1) - 2*at(x, y-1) - at(x+1, y-1)
			add(x, y, math.Abs(gx)+math.Abs(gy))
		}
	}
	profile := make([]float64, n+1) // prefix sums along the axis
	for i, v := range line {
		profile[i+1] = profile[i] + v
	}
	scores := make([]float64, n-window+1)
	for p := range scores {
		scores[p] = profile[p+window] - profile[p]
	}
	return scores
}

// lab converts an sRGB colour (0..255 a channel) to CIELAB (D65).
func lab(r, g, b float64) (l, a, bb float64) {
	lr, lg, lb := linear(r), linear(g), linear(b)
	x := (0.4124*lr + 0.3576*lg + 0.1805*lb) / 0.95047
	y := 0.2126*lr + 0.7152*lg + 0.0722*lb
	z := (0.0193*lr + 0.1192*lg + 0.9505*lb) / 1.08883
	fx, fy, fz := labF(x), labF(y), labF(z)
	return 116*fy - 16, 500 * (fx - fy), 200 * (fy - fz)
}

// linear is an sRGB channel (0..255, a whole number) in linear light (0..1).
func linear(c float64) float64 { return linearLight[min(max(int(c), 0), 255)] }

var linearLight = func() (table [256]float64) {
	for i := range table {
		c := float64(i) / 255
		if c <= 0.04045 {
			table[i] = c / 12.92
		} else {
			table[i] = math.Pow((c+0.055)/1.055, 2.4)
		}
	}
	return table
}()

func labF(t float64) float64 {
	const delta = 6.0 / 29
	if t > delta*delta*delta {
		return math.Cbrt(t)
	}
	return t/(3*delta*delta) + 4.0/29
}

// entropyScores is, for each start position of a window along axis, the Shannon
// entropy (bits) of the tones inside it, from a 32-bin luma histogram kept up to date
// as the window slides.
func (m *interestMap) entropyScores(axis, window int) []float64 {
	n, across := m.w, m.h
	bin := func(along, i int) int { return int(m.luma[i*m.w+along]) >> 3 }
	if axis == 1 {
		n, across = m.h, m.w
		bin = func(along, i int) int { return int(m.luma[along*m.w+i]) >> 3 }
	}
	var hist [32]int
	add := func(along, delta int) {
		for i := range across {
			hist[min(bin(along, i), 31)] += delta
		}
	}
	for along := range window {
		add(along, 1)
	}
	total := float64(window * across)
	scores := make([]float64, n-window+1)
	for p := range scores {
		if p > 0 {
			add(p-1, -1)
			add(p+window-1, 1)
		}
		var entropy float64
		for _, c := range hist {
			if c > 0 {
				q := float64(c) / total
				entropy -= q * math.Log2(q)
			}
		}
		scores[p] = entropy
	}
	return scores
}
