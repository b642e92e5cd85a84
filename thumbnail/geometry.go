package thumbnail

import "image"

// geometry says where the pixels go: scale the whole upright source to Scale, then
// keep the Crop rectangle of the result. Crop's size is the thumbnail's size; it is
// all of Scale except for FitCover.
type geometry struct {
	Scale image.Point
	Crop  image.Rectangle
}

// planGeometry computes the thumbnail's geometry from the upright source size and a
// spec with defaults applied. It is pure arithmetic, shared by every engine, and
// refuses a result no engine should try to allocate.
func planGeometry(srcWidth, srcHeight int, spec Spec) (geometry, error) {
	boxWidth, boxHeight := spec.Width, spec.Height
	if boxWidth == 0 {
		boxWidth = scaleSide(srcWidth, boxHeight, srcHeight)
	}
	if boxHeight == 0 {
		boxHeight = scaleSide(srcHeight, boxWidth, srcWidth)
	}
	// Compare the aspect ratios without dividing: the source is relatively wider than
	// the box when srcWidth/srcHeight > boxWidth/boxHeight.
	wider := int64(srcWidth)*int64(boxHeight) > int64(boxWidth)*int64(srcHeight)

	var g geometry
	switch spec.Fit {
	case FitFill:
		g.Scale = image.Pt(boxWidth, boxHeight)
	case FitCover:
		if wider { // the height fills the box; the sides are cropped
			g.Scale = image.Pt(max(boxWidth, scaleSide(srcWidth, boxHeight, srcHeight)), boxHeight)
		} else { // the width fills the box; top and bottom are cropped
			g.Scale = image.Pt(boxWidth, max(boxHeight, scaleSide(srcHeight, boxWidth, srcWidth)))
		}
	default: // FitContain
		if wider {
			g.Scale = image.Pt(boxWidth, min(boxHeight, scaleSide(srcHeight, boxWidth, srcWidth)))
		} else {
			g.Scale = image.Pt(min(boxWidth, scaleSide(srcWidth, boxHeight, srcHeight)), boxHeight)
		}
		if !spec.Enlarge && (g.Scale.X > srcWidth || g.Scale.Y > srcHeight) {
			g.Scale = image.Pt(srcWidth, srcHeight)
		}
	}
	out := image.Pt(min(boxWidth, g.Scale.X), min(boxHeight, g.Scale.Y))
	offset := g.Scale.Sub(out).Div(2)
	g.Crop = image.Rectangle{Min: offset, Max: offset.Add(out)}

	if out.X > MaxDimension || out.Y > MaxDimension {
		return geometry{}, newError(CodeInvalidSpec, nil, "the thumbnail would be %dx%d pixels; neither side may exceed %d pixels",
			out.X, out.Y, MaxDimension)
	}
	if pixels := int64(g.Scale.X) * int64(g.Scale.Y); pixels > spec.MaxPixels {
		return geometry{}, newError(CodeTooManyPixels, nil, "resizing the image as asked needs %dx%d pixels (%d); the limit is %d pixels",
			g.Scale.X, g.Scale.Y, pixels, spec.MaxPixels)
	}
	return g, nil
}

// scaleSide is side*to/from rounded to the nearest integer, at least 1: the length of
// a side when another side of the same image goes from `from` to `to` pixels.
func scaleSide(side, to, from int) int {
	n := (2*int64(side)*int64(to) + int64(from)) / (2 * int64(from))
	return int(max(n, 1))
}

// decodeSize is the size (upright) the libvips engine decodes a source to, for the
// outputs' scales: one image every output is then resized from, as small as serves
// them all. When one output's scale is at least every other's in both directions, it
// is that scale, so that output needs no second resize (and a job of one output is
// made exactly as a single thumbnail always was). Otherwise it is the smallest size
// of the source's own shape that covers every scale, and at most the source itself.
func decodeSize(scales []image.Point, src image.Point) image.Point {
	for _, s := range scales {
		if dominates(s, scales) {
			return s
		}
	}
	// Scale the source by the largest factor any output asks in either direction:
	// sx/src.X for the widest, sy/src.Y for the tallest.
	factor := image.Pt(0, 1) // the fraction factor.X / factor.Y
	for _, s := range scales {
		if int64(s.X)*int64(factor.Y) > int64(factor.X)*int64(src.X) {
			factor = image.Pt(s.X, src.X)
		}
		if int64(s.Y)*int64(factor.Y) > int64(factor.X)*int64(src.Y) {
			factor = image.Pt(s.Y, src.Y)
		}
	}
	if factor.X >= factor.Y {
		return src
	}
	ceil := func(side int) int {
		return int((int64(side)*int64(factor.X) + int64(factor.Y) - 1) / int64(factor.Y))
	}
	size := image.Pt(min(ceil(src.X), src.X), min(ceil(src.Y), src.Y))
	for _, s := range scales { // rounding never leaves a scale uncovered
		size = image.Pt(max(size.X, min(s.X, src.X)), max(size.Y, min(s.Y, src.Y)))
	}
	return size
}

func dominates(s image.Point, scales []image.Point) bool {
	for _, t := range scales {
		if t.X > s.X || t.Y > s.Y {
			return false
		}
	}
	return true
}
