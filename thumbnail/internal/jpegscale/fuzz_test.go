package jpegscale

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"testing"
)

// FuzzDecode checks that Decode never panics, and that whatever image/jpeg
// decodes, Decode decodes too, to the same bounds (or leaves to image/jpeg
// with ErrUnsupported), at every scale; at full size, the pixels must be
// image/jpeg's too, but where the two read a scan's layout differently (see
// scanLayout).
func FuzzDecode(f *testing.F) {
	for _, spec := range []encSpec{
		{w: 16, h: 16, sampling: s3(0x22, 0x11, 0x11), jfif: true},           // 4:2:0
		{w: 17, h: 9, sampling: s3(0x22, 0x11, 0x11), progress: true},        // progressive 4:2:0
		{w: 9, h: 20, sampling: s3(0x11, 0x11, 0x11), progress: true, ri: 1}, // progressive, restarts
		{w: 8, h: 8, sampling: []uint8{0x11}},                                // grey
		{w: 12, h: 5, sampling: []uint8{0x11, 0x11, 0x11, 0x11}, adobe: 1},   // CMYK
		{w: 20, h: 12, sampling: s3(0x21, 0x11, 0x11), ri: 2},                // 4:2:2, restarts
		{w: 9, h: 9, sampling: s3(0x41, 0x11, 0x11), longCodes: true},        // 4:1:1, long codes
	} {
		f.Add(generatedJPEG(spec, spec.w, spec.h))
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, toImage(testPlanes(11, 7, 3, 1), 11, 7), nil); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(readTestdata(f, "formats/icc/thumbor-grayscale-icc.jpg"))
	f.Add(readTestdata(f, "hostile/fuzz/imagetestsuite-jpg-4085c929e00c446d3fee18b5b20a27f9.jpg"))

	f.Fuzz(func(t *testing.T, src []byte) { checkDecode(t, src) })
}

// checkDecode is FuzzDecode's check of one input. It returns what happened,
// for statistics: "too large", "decoded" (by both), "unsupported" (image/jpeg
// decodes it), "jpegscale only", "image/jpeg only" (unsupported),
// "refused" (by both).
func checkDecode(t *testing.T, src []byte) string {
	cfg, cfgErr := jpeg.DecodeConfig(bytes.NewReader(src))
	if cfgErr == nil && cfg.Width*cfg.Height > 1<<16 {
		// Keep the decoders' allocations small. (Where image/jpeg cannot
		// read the header, Decode fails before allocating anything.)
		return "too large"
	}
	orig := bytes.Clone(src)
	d := &decoder{src: src}
	got, err := d.decode() // Decode(src, 1), and d.quirk
	if !bytes.Equal(src, orig) {
		t.Fatal("Decode changed its input")
	}
	if err == nil {
		if got == nil {
			t.Fatal("no image and no error")
		}
		// The scaled decodings read the same data: they succeed too.
		w, h := got.Bounds().Dx(), got.Bounds().Dy()
		for _, denom := range []int{2, 4, 8} {
			m, err := Decode(src, denom)
			if err != nil {
				t.Fatalf("1/1 decodes, 1/%d: %v", denom, err)
			}
			if want := image.Rect(0, 0, (w+denom-1)/denom, (h+denom-1)/denom); m.Bounds() != want {
				t.Fatalf("1/%d: bounds %v, want %v", denom, m.Bounds(), want)
			}
			if fmt.Sprintf("%T", m) != fmt.Sprintf("%T", got) {
				t.Fatalf("1/%d: %T, 1/1: %T", denom, m, got)
			}
		}
	} else if got != nil {
		t.Fatal("an image and an error")
	}
	var want image.Image
	wantErr := cfgErr
	if cfgErr == nil {
		want, wantErr = jpeg.Decode(bytes.NewReader(src))
	}
	switch {
	case wantErr != nil && err != nil:
		return "refused"
	case wantErr != nil:
		return "jpegscale only"
	case errors.Is(err, ErrUnsupported):
		return "image/jpeg only (unsupported)"
	}
	if err != nil {
		t.Fatalf("image/jpeg decodes it, Decode: %v", err)
	}
	if got.Bounds() != want.Bounds() {
		t.Fatalf("bounds %v, image/jpeg %v", got.Bounds(), want.Bounds())
	}
	if fmt.Sprintf("%T", got) != fmt.Sprintf("%T", want) {
		t.Fatalf("%T, image/jpeg %T", got, want)
	}
	if diff := samePixels(got, want, 0); diff != "" && !d.quirk {
		t.Fatalf("not image/jpeg's pixels: %s", diff)
	}
	return "decoded"
}

// TestCorruptedFiles runs FuzzDecode's check on damaged copies of small
// files of every kind: bytes changed, runs of bytes dropped or repeated,
// markers inserted.
func TestCorruptedFiles(t *testing.T) {
	seeds := map[string][]byte{
		"progressive 420":      generatedJPEG(encSpec{sampling: s3(0x22, 0x11, 0x11), progress: true}, 23, 17),
		"progressive restart":  generatedJPEG(encSpec{sampling: s3(0x11, 0x11, 0x11), progress: true, ri: 1}, 17, 9),
		"baseline 422 restart": generatedJPEG(encSpec{sampling: s3(0x21, 0x11, 0x11), ri: 2}, 30, 20),
		"baseline 411":         generatedJPEG(encSpec{sampling: s3(0x41, 0x11, 0x11), longCodes: true}, 40, 9),
		"ycck":                 generatedJPEG(encSpec{sampling: []uint8{0x22, 0x11, 0x11, 0x22}, adobe: 3}, 20, 20),
		"gray progressive":     generatedJPEG(encSpec{sampling: []uint8{0x11}, progress: true}, 20, 20),
	}
	n := 800
	if testing.Short() || raceEnabled {
		n = 100
	}
	for name, seed := range seeds {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(len(seed)), 9))
			outcomes := map[string]int{}
			for range n {
				src := bytes.Clone(seed)
				for range 1 + r.IntN(3) {
					i := r.IntN(len(src))
					switch r.IntN(5) {
					case 0, 1: // change a byte
						src[i] = byte(r.IntN(256))
					case 2: // flip a bit
						src[i] ^= 1 << r.IntN(8)
					case 3: // drop or repeat a run
						j := min(len(src), i+1+r.IntN(16))
						if r.IntN(2) == 0 {
							src = append(src[:i:i], src[j:]...)
						} else {
							src = append(src[:j:j], src[i:]...)
						}
					case 4: // insert a marker
						m := []byte{0xff, byte(0xc0 + r.IntN(64))}
						src = append(src[:i:i], append(m, src[i:]...)...)
					}
				}
				outcomes[checkDecode(t, src)]++
			}
			t.Log(outcomes)
		})
	}
}
