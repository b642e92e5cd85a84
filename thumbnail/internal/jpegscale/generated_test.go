package jpegscale

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"testing"

	"github.com/matryer/is"
)

var s3 = func(a, b, c uint8) []uint8 { return []uint8{a, b, c} }

// generatedCases are the kinds of JPEG the tests encode, at every size of
// generatedSizes.
var generatedCases = []struct {
	name string
	spec encSpec
}{
	{"444", encSpec{sampling: s3(0x11, 0x11, 0x11)}},
	{"422", encSpec{sampling: s3(0x21, 0x11, 0x11)}},
	{"420", encSpec{sampling: s3(0x22, 0x11, 0x11), jfif: true}},
	{"440", encSpec{sampling: s3(0x12, 0x11, 0x11)}},
	{"411", encSpec{sampling: s3(0x41, 0x11, 0x11)}},
	{"410", encSpec{sampling: s3(0x42, 0x11, 0x11)}},
	{"444 in 1x2 blocks", encSpec{sampling: s3(0x12, 0x12, 0x12)}},
	{"422 in 4x1 MCUs", encSpec{sampling: s3(0x41, 0x21, 0x21), extended: true}},
	{"gray", encSpec{sampling: []uint8{0x11}}},
	{"gray with factors 2x2", encSpec{sampling: []uint8{0x22}}},
	{"rgb (Adobe)", encSpec{sampling: s3(0x11, 0x11, 0x11), adobe: 1}},
	{"rgb (ids)", encSpec{sampling: s3(0x11, 0x11, 0x11), ids: []uint8{'R', 'G', 'B'}}},
	{"cmyk", encSpec{sampling: []uint8{0x11, 0x11, 0x11, 0x11}, adobe: 1}},
	{"cmyk 2x2", encSpec{sampling: []uint8{0x22, 0x11, 0x11, 0x22}, adobe: 1}},
	{"ycck", encSpec{sampling: []uint8{0x11, 0x11, 0x11, 0x11}, adobe: 3}},
	{"ycck 2x2", encSpec{sampling: []uint8{0x22, 0x11, 0x11, 0x22}, adobe: 3}},
	{"420 restarts", encSpec{sampling: s3(0x22, 0x11, 0x11), ri: 3}},
	{"422 restart every MCU", encSpec{sampling: s3(0x21, 0x11, 0x11), ri: 1}},
	{"420 separate scans", encSpec{sampling: s3(0x22, 0x11, 0x11), extended: true,
		script: []scanSpec{{[]int{0}, 0, 63, 0, 0}, {[]int{2}, 0, 63, 0, 0}, {[]int{1}, 0, 63, 0, 0}}}},
	{"444 separate scans restarts", encSpec{sampling: s3(0x11, 0x11, 0x11), ri: 2,
		script: []scanSpec{{[]int{1, 2}, 0, 63, 0, 0}, {[]int{0}, 0, 63, 0, 0}}}},
	{"long codes", encSpec{sampling: s3(0x22, 0x11, 0x11), longCodes: true}},
	{"quality 100", encSpec{sampling: s3(0x11, 0x11, 0x11), quality: 100}},
	{"quality 5", encSpec{sampling: s3(0x22, 0x11, 0x11), quality: 5}},
	{"progressive 420", encSpec{sampling: s3(0x22, 0x11, 0x11), progress: true}},
	{"progressive 422", encSpec{sampling: s3(0x21, 0x11, 0x11), progress: true}},
	{"progressive 444", encSpec{sampling: s3(0x11, 0x11, 0x11), progress: true, quality: 98}},
	{"progressive 411", encSpec{sampling: s3(0x41, 0x11, 0x11), progress: true}},
	{"progressive 440", encSpec{sampling: s3(0x12, 0x11, 0x11), progress: true}},
	{"progressive gray", encSpec{sampling: []uint8{0x11}, progress: true}},
	{"progressive cmyk", encSpec{sampling: []uint8{0x11, 0x11, 0x11, 0x11}, progress: true, adobe: 1}},
	{"progressive long codes", encSpec{sampling: s3(0x22, 0x11, 0x11), progress: true, longCodes: true}},
	{"progressive 444 restarts", encSpec{sampling: s3(0x11, 0x11, 0x11), progress: true, ri: 2}},
	{"progressive deep refinement", encSpec{sampling: s3(0x11, 0x11, 0x11), progress: true, quality: 100,
		script: []scanSpec{
			{[]int{0, 1, 2}, 0, 0, 0, 3}, {[]int{0, 1, 2}, 0, 0, 3, 2}, {[]int{0, 1, 2}, 0, 0, 2, 1}, {[]int{0, 1, 2}, 0, 0, 1, 0},
			{[]int{0}, 1, 2, 0, 4}, {[]int{0}, 3, 63, 0, 4}, {[]int{0}, 1, 63, 4, 3}, {[]int{0}, 1, 63, 3, 2},
			{[]int{0}, 1, 63, 2, 1}, {[]int{0}, 1, 63, 1, 0},
			{[]int{1}, 1, 63, 0, 2}, {[]int{1}, 1, 63, 2, 1}, {[]int{1}, 1, 63, 1, 0},
			{[]int{2}, 1, 63, 0, 0},
		}}},
}

// nativePlanes reports whether the planes of the decoded m hold the samples of
// the JPEG's components at their own resolution: for CMYK and RGB results,
// when no component is subsampled (and for CMYK not YCCK, which is converted
// from YCbCr).
func nativePlanes(spec encSpec, m image.Image) bool {
	switch m.(type) {
	case *image.YCbCr, *image.Gray:
		return true
	}
	for _, hv := range spec.sampling {
		if hv != spec.sampling[0] {
			return false
		}
	}
	return spec.adobe != 3
}

var generatedSizes = [][2]int{{1, 1}, {7, 9}, {17, 33}, {64, 48}, {lineLength, 1}, {1, 200}, {123, 77}}

// lineLength is the width of the generated one-pixel-high images: 4095, or
// 511 under the race detector, which makes the test encoder's FDCT slow.
var lineLength = map[bool]int{false: 4095, true: 511}[raceEnabled]

// generatedJPEG encodes a test picture of the given size with spec.
func generatedJPEG(spec encSpec, w, h int) []byte {
	spec.w, spec.h = w, h
	return encode(spec, testPlanes(w, h, len(spec.sampling), uint64(w*1000+h)))
}

// TestGeneratedMatchesImageJPEG: at denom 1, the pixels are image/jpeg's;
// scaled, the result has the right shape and is close to image/jpeg's
// decoding shrunk by a box filter.
func TestGeneratedMatchesImageJPEG(t *testing.T) {
	worst := map[int]float64{2: 99, 4: 99, 8: 99}
	worstPlane := map[int]float64{2: 99, 4: 99, 8: 99}
	worstDiff := map[int]int{}
	for _, tc := range generatedCases {
		for _, size := range generatedSizes {
			w, h := size[0], size[1]
			t.Run(fmt.Sprintf("%s/%dx%d", tc.name, w, h), func(t *testing.T) {
				is := is.New(t)
				src := generatedJPEG(tc.spec, w, h)
				want, err := jpeg.Decode(bytes.NewReader(src))
				is.NoErr(err) // the test encoder writes valid JPEGs
				ref := toRGB(want)
				for _, denom := range denoms {
					got, err := Decode(src, denom)
					is.NoErr(err)
					is.Equal(got.Bounds(), image.Rect(0, 0, (w+denom-1)/denom, (h+denom-1)/denom))
					is.Equal(fmt.Sprintf("%T", got), fmt.Sprintf("%T", want))
					if denom == 1 {
						is.Equal(samePixels(got, want, 0), "") // identical to image/jpeg
						continue
					}
					if y, ok := got.(*image.YCbCr); ok {
						is.Equal(y.SubsampleRatio, want.(*image.YCbCr).SubsampleRatio)
					}
					// The colour image against image/jpeg's, box-filtered:
					// the loss of chroma resolution, and the pixels at the
					// right and bottom edges (which average the padding of
					// the last blocks) count, and the test pictures are small
					// and busy: the photo tests ask much more.
					p := psnr(boxShrink(ref, denom), toRGB(got))
					worst[denom] = min(worst[denom], p)
					is.True(p >= 18)
					if !nativePlanes(tc.spec, got) {
						continue
					}
					// Plane by plane, inside the image, the scaled samples
					// are the box-filtered ones but for rounding (and clamping:
					// the full-size pixels are clamped before averaging).
					pp, maxDiff := planePSNR(got, want, denom)
					worstPlane[denom] = min(worstPlane[denom], pp)
					worstDiff[denom] = max(worstDiff[denom], maxDiff)
					is.True(pp >= 35)
					if tc.spec.quality == 0 || tc.spec.quality >= 50 {
						is.True(maxDiff <= 2)
					}
				}
			})
		}
	}
	t.Logf("lowest PSNR against image/jpeg + box filter: 1/2 %.1f dB, 1/4 %.1f dB, 1/8 %.1f dB", worst[2], worst[4], worst[8])
	t.Logf("lowest plane PSNR: 1/2 %.1f dB, 1/4 %.1f dB, 1/8 %.1f dB", worstPlane[2], worstPlane[4], worstPlane[8])
	t.Logf("largest sample difference: 1/2 %d, 1/4 %d, 1/8 %d", worstDiff[2], worstDiff[4], worstDiff[8])
}

// TestImageJPEGEncoded: files from image/jpeg's own encoder (4:2:0 or gray).
func TestImageJPEGEncoded(t *testing.T) {
	for _, size := range generatedSizes {
		for _, gray := range []bool{false, true} {
			w, h := size[0], size[1]
			t.Run(fmt.Sprintf("%dx%d gray=%v", w, h, gray), func(t *testing.T) {
				is := is.New(t)
				var m image.Image = toImage(testPlanes(w, h, 3, 5), w, h)
				if gray {
					g := image.NewGray(m.Bounds())
					for y := 0; y < h; y++ {
						for x := 0; x < w; x++ {
							g.Set(x, y, m.At(x, y))
						}
					}
					m = g
				}
				var buf bytes.Buffer
				is.NoErr(jpeg.Encode(&buf, m, &jpeg.Options{Quality: 85}))
				want, err := jpeg.Decode(bytes.NewReader(buf.Bytes()))
				is.NoErr(err)
				for _, denom := range denoms {
					got, err := Decode(buf.Bytes(), denom)
					is.NoErr(err)
					is.Equal(got.Bounds(), image.Rect(0, 0, (w+denom-1)/denom, (h+denom-1)/denom))
					if denom == 1 {
						is.Equal(samePixels(got, want, 0), "")
					} else {
						is.True(psnr(boxShrink(toRGB(want), denom), toRGB(got)) >= 18)
						pp, maxDiff := planePSNR(got, want, denom)
						is.True(pp >= 35)
						is.True(maxDiff <= 2)
					}
				}
			})
		}
	}
}

// TestRestartIntervalsChangeNothing: the same picture with and without
// restart markers decodes to the same pixels at every scale, including the
// layouts where image/jpeg counts restart intervals in a non-interleaved
// scan differently from section A.2 (a progressive 4:2:0 or 4:2:2 image with
// restart markers): this package then follows the standard, like libjpeg.
func TestRestartIntervalsChangeNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec encSpec
	}{
		{"progressive 420", encSpec{sampling: s3(0x22, 0x11, 0x11), progress: true}},
		{"progressive 422", encSpec{sampling: s3(0x21, 0x11, 0x11), progress: true}},
		{"progressive gray", encSpec{sampling: []uint8{0x11}, progress: true}},
		{"baseline 420 separate scans", encSpec{sampling: s3(0x22, 0x11, 0x11),
			script: []scanSpec{{[]int{0}, 0, 63, 0, 0}, {[]int{1, 2}, 0, 63, 0, 0}}}},
		{"422 in 4x1 MCUs separate scans", encSpec{sampling: s3(0x41, 0x21, 0x21), progress: true}},
	} {
		for _, ri := range []int{1, 2, 5} {
			t.Run(fmt.Sprintf("%s/ri=%d", tc.name, ri), func(t *testing.T) {
				is := is.New(t)
				const w, h = 61, 35
				plain := generatedJPEG(tc.spec, w, h)
				spec := tc.spec
				spec.ri = ri
				restarts := generatedJPEG(spec, w, h)
				is.True(bytes.Contains(restarts, []byte{0xff, 0xd0})) // has restart markers
				for _, denom := range denoms {
					want, err := Decode(plain, denom)
					is.NoErr(err)
					got, err := Decode(restarts, denom)
					is.NoErr(err)
					is.Equal(samePixels(got, want, 0), "")
				}
				_, err := jpeg.Decode(bytes.NewReader(restarts))
				t.Logf("image/jpeg: %v", err)
			})
		}
	}
}

// TestQuirkFallsBack: where image/jpeg reads a scan differently and this
// package fails to decode it, the error says to use image/jpeg.
func TestQuirkFallsBack(t *testing.T) {
	is := is.New(t)
	spec := encSpec{sampling: s3(0x22, 0x11, 0x11), progress: true, ri: 2}
	src := generatedJPEG(spec, 40, 40)
	// Cut the data of the second scan (the first of Y's AC scans, whose
	// restart intervals image/jpeg counts in MCUs of 4 blocks) short.
	i := bytes.Index(src, []byte{0xff, 0xda})
	i += bytes.Index(src[i+2:], []byte{0xff, 0xda}) + 2
	j := i + bytes.Index(src[i:], []byte{0xff, 0xd0})
	damaged := append(bytes.Clone(src[:j-4]), src[j:]...)
	_, err := Decode(damaged, 1)
	t.Log(err)
	is.True(errors.Is(err, ErrUnsupported))
	// The same damage in a layout both read alike is a plain error.
	spec.sampling = s3(0x11, 0x11, 0x11)
	src = generatedJPEG(spec, 40, 40)
	i = bytes.Index(src, []byte{0xff, 0xda})
	i += bytes.Index(src[i+2:], []byte{0xff, 0xda}) + 2
	j = i + bytes.Index(src[i:], []byte{0xff, 0xd0})
	damaged = append(bytes.Clone(src[:j-4]), src[j:]...)
	_, err = Decode(damaged, 1)
	t.Log(err)
	is.True(err != nil && !errors.Is(err, ErrUnsupported))
}
