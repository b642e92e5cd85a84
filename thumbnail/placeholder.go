package thumbnail

import (
	"fmt"
	"image"
	"math"
	"strings"
)

// placeholderSide is the longest side of the copy a placeholder is computed from: a
// BlurHash of 4x3 components and a coarse colour histogram need no more.
const placeholderSide = 64

// makePlaceholder computes a job's placeholder from an output's pixels (premultiplied,
// before encoding), flattened onto white as a JPEG of them would show.
func makePlaceholder(img *image.RGBA) Placeholder {
	small := placeholderCopy(img)
	return Placeholder{BlurHash: blurHash(small, 4, 3), DominantColor: dominantColor(small)}
}

// placeholderCopy is img box-shrunk to placeholderSide to twice that on its longest
// side (a smaller image is kept as it is), flattened onto white, as a new image.
func placeholderCopy(img *image.RGBA) *image.RGBA {
	k := placeholderShrink(img.Rect.Size())
	var small *image.RGBA
	if k > 1 {
		small = boxShrink(img, k).(*image.RGBA)
	} else {
		small = cloneRGBA(toRGBA(img))
	}
	flattenOnWhite(small)
	return small
}

// placeholderShrink is the block size placeholderCopy averages.
func placeholderShrink(size image.Point) int {
	return max(1, min(max(size.X, size.Y)/placeholderSide, min(size.X, size.Y)))
}

// dominantColor is the most frequent colour of an opaque image: its pixels are
// counted in a coarse histogram (8 levels per channel, 512 buckets), and the answer
// is the mean of the fullest bucket, so a flat colour comes back exactly.
func dominantColor(img *image.RGBA) string {
	type bucket struct{ n, r, g, b int }
	var buckets [512]bucket
	best := 0
	for y := img.Rect.Min.Y; y < img.Rect.Max.Y; y++ {
		row := img.Pix[img.PixOffset(img.Rect.Min.X, y):]
		for x := range img.Rect.Dx() {
			r, g, b := int(row[4*x]), int(row[4*x+1]), int(row[4*x+2])
			i := r>>5<<6 | g>>5<<3 | b>>5
			bk := &buckets[i]
			bk.n++
			bk.r += r
			bk.g += g
			bk.b += b
			if bk.n > buckets[best].n {
				best = i
			}
		}
	}
	bk := buckets[best]
	if bk.n == 0 {
		return "#ffffff"
	}
	mean := func(sum int) int { return (2*sum + bk.n) / (2 * bk.n) }
	return fmt.Sprintf("#%02x%02x%02x", mean(bk.r), mean(bk.g), mean(bk.b))
}

// blurHash encodes an opaque image as a BlurHash of xc x yc components, as the
// reference implementation does (github.com/woltapp/blurhash): the image's colours in
// linear light, projected onto xc x yc cosines, quantised and written in base 83. Its
// own encoder rather than a library's: the Go libraries call At and math.Pow for every
// pixel of every component, 10 ms for a 64 px copy where this takes a fraction of one.
func blurHash(img *image.RGBA, xc, yc int) string {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	cosines := func(n, components int) []float64 {
		c := make([]float64, n*components)
		for i := range components {
			for p := range n {
				c[i*n+p] = math.Cos(math.Pi * float64(i) * float64(p) / float64(n))
			}
		}
		return c
	}
	cosX, cosY := cosines(w, xc), cosines(h, yc)
	factors := make([][3]float64, xc*yc)
	for y := range h {
		row := img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):]
		for x := range w {
			r, g, b := linearLight[row[4*x]], linearLight[row[4*x+1]], linearLight[row[4*x+2]]
			for j := range yc {
				for i := range xc {
					basis := cosX[i*w+x] * cosY[j*h+y]
					f := &factors[j*xc+i]
					f[0] += basis * r
					f[1] += basis * g
					f[2] += basis * b
				}
			}
		}
	}
	for i := range factors {
		scale := 2 / float64(w*h)
		if i == 0 {
			scale = 1 / float64(w*h)
		}
		for c := range 3 {
			factors[i][c] *= scale
		}
	}

	var out strings.Builder
	writeBase83(&out, (xc-1)+(yc-1)*9, 1)
	largest := 0.0
	for _, f := range factors[1:] {
		largest = max(largest, math.Abs(f[0]), math.Abs(f[1]), math.Abs(f[2]))
	}
	quantised := int(max(0, min(82, math.Floor(largest*166-0.5))))
	maximum := float64(quantised+1) / 166
	if len(factors) == 1 {
		quantised, maximum = 0, 1
	}
	writeBase83(&out, quantised, 1)
	dc := factors[0]
	writeBase83(&out, srgbByte(dc[0])<<16|srgbByte(dc[1])<<8|srgbByte(dc[2]), 4)
	for _, f := range factors[1:] {
		q := func(v float64) int {
			v /= maximum
			return int(max(0, min(18, math.Floor(math.Copysign(math.Sqrt(math.Abs(v)), v)*9+9.5))))
		}
		writeBase83(&out, q(f[0])*19*19+q(f[1])*19+q(f[2]), 2)
	}
	return out.String()
}

// srgbByte is a linear-light value (0..1) as an sRGB channel, 0..255.
func srgbByte(v float64) int {
	v = max(0, min(1, v))
	if v <= 0.0031308 {
		return int(v*12.92*255 + 0.5)
	}
	return int((1.055*math.Pow(v, 1/2.4)-0.055)*255 + 0.5)
}

const base83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"

func writeBase83(out *strings.Builder, value, digits int) {
	for i := digits - 1; i >= 0; i-- {
		out.WriteByte(base83[value/int(math.Pow(83, float64(i)))%83])
	}
}
