package thumbnail

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/matryer/is"
	"github.com/nfnt/resize"
)

func TestShrinkFactor(t *testing.T) {
	is := is.New(t)
	is.Equal(shrinkFactor(4224, 3168, 256, 192), 8) // 528x396 left for Lanczos3
	is.Equal(shrinkFactor(2560, 3837, 171, 256), 7)
	is.Equal(shrinkFactor(1920, 1280, 256, 171), 3)
	is.Equal(shrinkFactor(400, 400, 256, 256), 1)         // too little to gain
	is.Equal(shrinkFactor(100, 100, 400, 400), 1)         // enlarging
	is.Equal(shrinkFactor(4000, 100, 100, 100), 1)        // one side already near the target
	is.Equal(shrinkFactor(20000, 20000, 1, 1), maxShrink) // block sums stay within uint32
}

// randomYCbCr is a noisy photo stand-in with the given chroma subsampling.
func randomYCbCr(w, h int, ratio image.YCbCrSubsampleRatio) *image.YCbCr {
	m := image.NewYCbCr(image.Rect(0, 0, w, h), ratio)
	r := rand.New(rand.NewPCG(1, 2))
	for _, plane := range [][]uint8{m.Y, m.Cb, m.Cr} {
		for i := range plane {
			plane[i] = uint8(64 + r.IntN(128))
		}
	}
	return m
}

func TestBoxShrinkOfYCbCrMatchesShrinkOfItsRGBA(t *testing.T) {
	// The YCbCr path averages the planes as stored; averaging after converting every
	// pixel to RGBA must give (nearly) the same colours.
	for _, ratio := range []image.YCbCrSubsampleRatio{
		image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420,
		image.YCbCrSubsampleRatio440, image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410,
	} {
		t.Run(ratio.String(), func(t *testing.T) {
			is := is.New(t)
			src := randomYCbCr(103, 61, ratio)
			for _, k := range []int{2, 3, 4, 7} {
				fast := boxShrink(src, k).(*image.RGBA)
				slow := boxShrink(toRGBA(src), k).(*image.RGBA)
				is.Equal(fast.Rect, image.Rect(0, 0, 103/k, 61/k))
				is.Equal(fast.Rect, slow.Rect)
				is.True(meanAbsDiff(fast, slow) < 1) // only rounding differs
			}
		})
	}
}

func TestBoxShrinkAveragesBlocksAndDropsTheRemainderEvenly(t *testing.T) {
	is := is.New(t)
	// 5x1 gray: 10 20 30 40 50 shrunk by 2 keeps two blocks, dropping half the
	// remainder on each side: (10+20)/2 and (30+40)/2 with the pixel of 50 dropped.
	src := &image.Gray{Pix: []uint8{10, 20, 30, 40, 50, 10, 20, 30, 40, 50}, Stride: 5, Rect: image.Rect(0, 0, 5, 2)}
	out := boxShrink(src, 2).(*image.Gray)
	is.Equal(out.Pix, []uint8{15, 35})
	// 7 pixels by 3 leaves one: it is dropped at the start (7%3/2 = 0)... and 8 by 3
	// leaves two, one dropped at each edge.
	src = &image.Gray{Pix: []uint8{0, 3, 3, 3, 6, 6, 6, 9}, Stride: 8, Rect: image.Rect(0, 0, 8, 1)}
	is.Equal(boxShrink(src, 3).(*image.Gray).Rect.Dx(), 2)
	src = &image.Gray{Pix: []uint8{0, 3, 3, 3, 6, 6, 6, 9, 0, 3, 3, 3, 6, 6, 6, 9, 0, 3, 3, 3, 6, 6, 6, 9}, Stride: 8, Rect: image.Rect(0, 0, 8, 3)}
	is.Equal(boxShrink(src, 3).(*image.Gray).Pix, []uint8{3, 6})
}

func TestBoxShrinkKeepsTransparencyColourless(t *testing.T) {
	is := is.New(t)
	src := image.NewRGBA(image.Rect(0, 0, 4, 4))
	src.Set(0, 0, color.RGBA{255, 0, 0, 255}) // one red pixel, the rest transparent
	out := boxShrink(src, 4).(*image.RGBA)
	is.Equal(out.Pix, []uint8{16, 0, 0, 16}) // a faint red, still premultiplied
	nrgba := image.NewNRGBA(image.Rect(0, 0, 2, 2))
	nrgba.Pix = []uint8{255, 255, 255, 0, 255, 255, 255, 0, 0, 0, 255, 255, 0, 0, 255, 255}
	is.Equal(boxShrink(nrgba, 2).(*image.RGBA).Pix, []uint8{0, 0, 128, 128}) // invisible white lends nothing
}

// TestPreShrinkLooksLikeLanczosAlone measures what the box pre-shrink costs in quality:
// the thumbnail against one made by Lanczos3 from the full-size image.
func TestPreShrinkLooksLikeLanczosAlone(t *testing.T) {
	is := is.New(t)
	img, err := jpeg.Decode(bytes.NewReader(readTestdata(t, "photos/Storm.jpg")))
	is.NoErr(err)
	reference := toRGBA(resize.Resize(256, 171, img, resize.Lanczos3))
	is.True(shrinkFactor(1920, 1280, 256, 171) > 1) // the pre-shrink is used here
	got := scaleImage(img, 256, 171)
	p := psnr(got, reference)
	t.Logf("PSNR against Lanczos3 alone: %.1f dB", p)
	is.True(p > 38) // no visible difference (x/image/draw ApproxBiLinear scores 29 dB)
}

func psnr(a, b *image.RGBA) float64 {
	var sum float64
	for i := range a.Pix {
		d := float64(a.Pix[i]) - float64(b.Pix[i])
		sum += d * d
	}
	return 10 * math.Log10(255*255/(sum/float64(len(a.Pix))))
}

func TestScaleImage(t *testing.T) {
	is := is.New(t)
	for _, src := range []image.Image{
		randomYCbCr(600, 400, image.YCbCrSubsampleRatio420),
		image.NewGray(image.Rect(0, 0, 600, 400)),
		image.NewNRGBA(image.Rect(0, 0, 600, 400)),
		image.NewPaletted(image.Rect(0, 0, 600, 400), color.Palette{color.Black}),
		image.NewCMYK(image.Rect(0, 0, 600, 400)),
		image.NewRGBA64(image.Rect(0, 0, 600, 400)),
	} {
		for _, size := range []image.Point{{60, 40}, {250, 170}, {600, 400}, {1200, 800}, {1, 1}} {
			out := scaleImage(src, size.X, size.Y)
			is.Equal(out.Rect, image.Rectangle{Max: size}) // %T to size
		}
	}
}

func TestClampPremultiplied(t *testing.T) {
	is := is.New(t)
	m := &image.RGBA{Pix: []uint8{200, 10, 90, 100, 255, 255, 255, 255}, Stride: 8, Rect: image.Rect(0, 0, 2, 1)}
	clampPremultiplied(m)
	is.Equal(m.Pix, []uint8{100, 10, 90, 100, 255, 255, 255, 255})
}

func BenchmarkBoxShrinkYCbCr(b *testing.B) {
	src := randomYCbCr(4224, 3168, image.YCbCrSubsampleRatio420)
	b.ReportAllocs()
	for b.Loop() {
		boxShrink(src, 8)
	}
}
