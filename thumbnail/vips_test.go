//go:build vips

package thumbnail

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/thumbnail/internal/testcorpus"
)

func TestVipsEngineIsTheDefault(t *testing.T) {
	is := is.New(t)
	is.Equal(Default.Name(), "vips")
	is.True(strings.HasPrefix(Default.Version(), "8."))
	for _, f := range []Format{FormatJPEG, FormatPNG, FormatGIF, FormatWebP, FormatTIFF, FormatAVIF, FormatHEIC} {
		is.True(Default.Accepts(f))
	}
	for _, f := range []Format{FormatJPEG, FormatPNG, FormatWebP} {
		is.True(Default.Encodes(f))
	}
	is.True(!Default.Encodes(FormatGIF))
	is.Equal(acceptedList(Default), "JPEG, PNG, GIF, WebP, TIFF, AVIF and HEIC")
}

// The two engines must agree on every thumbnail's size to the pixel: clients and
// tests see the same answer whichever engine a deploy was built with. The Go
// engine's size is what its own pipeline plans, up to and including "plan the
// geometry" (small files are also made in full, to show that the plan is the size).
func TestVipsAndGoEnginesGiveTheSameSize(t *testing.T) {
	planned := func(src []byte, spec Spec) (image.Point, error) {
		j := newJob(goEngine{}, src, []Output{spec.output()}, spec.MaxPixels)
		var steps []step
		for _, s := range goPipeline {
			if steps = append(steps, s); s.name == "plan the geometry" {
				break
			}
		}
		err := runPipeline(context.Background(), j, steps)
		if err != nil {
			return image.Point{}, err
		}
		return j.outputs[0].geometry.Crop.Size(), nil
	}
	specs := []Spec{
		{Width: 256, Height: 256},
		{Width: 200, Height: 120, Fit: FitCover},
		{Width: 7, Height: 300, Fit: FitCover},
		{Width: 300, Height: 50, Fit: FitFill},
		{Width: 33},
		{Height: 64},
		{Width: 1, Height: 1},
		{Width: 4000, Height: 4000},
		{Width: 333, Height: 333, Enlarge: true},
		{Width: 97, Height: 61, Fit: FitCover, Format: FormatWebP},
	}
	for _, row := range testcorpus.Read(t, "testdata") {
		if expectedCode(row) != "" || !(goEngine{}).Accepts(manifestFormat(row)) || testing.Short() && row.Width*row.Height > 4_000_000 {
			continue
		}
		if strings.HasPrefix(row.File, "pngsuite/") && !strings.HasPrefix(row.File, "pngsuite/s") {
			continue // 32x32 like the rest; the s* files are the odd sizes, 1x1 to 40x40
		}
		src := readTestdata(t, row.File)
		t.Run(row.File, func(t *testing.T) {
			for _, spec := range specs {
				want, err := planned(src, spec)
				if err != nil {
					t.Fatalf("go engine, %+v: %v", spec, err)
				}
				if row.Width*row.Height <= 50_000 {
					res, err := goEngine{}.Make(context.Background(), src, spec)
					if err != nil || image.Pt(res.Width, res.Height) != want {
						t.Fatalf("go engine, %+v: made %dx%d, planned %v: %v", spec, res.Width, res.Height, want, err)
					}
				}
				got, err := Default.Make(context.Background(), src, spec)
				if err != nil {
					t.Fatalf("vips engine, %+v: %v", spec, err)
				}
				if image.Pt(got.Width, got.Height) != want {
					t.Errorf("%+v: vips made %dx%d, go %dx%d", spec, got.Width, got.Height, want.X, want.Y)
				}
			}
		})
	}
}

// pngThumbnail makes a PNG thumbnail of a corpus file and decodes it.
func pngThumbnail(t *testing.T, e Engine, file string, spec Spec) *image.RGBA {
	t.Helper()
	spec.Format = FormatPNG
	res, err := e.Make(context.Background(), readTestdata(t, file), spec)
	is.New(t).NoErr(err)
	if e == Default {
		checkOutput(t, res, spec)
	}
	img, err := png.Decode(bytes.NewReader(res.Data))
	is.New(t).NoErr(err)
	return toRGBA(img)
}

// meanRGB is the mean colour of a rectangle of img.
func meanRGB(img *image.RGBA, r image.Rectangle) [3]float64 {
	var sum [3]float64
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			c := img.RGBAAt(x, y)
			sum[0], sum[1], sum[2] = sum[0]+float64(c.R), sum[1]+float64(c.G), sum[2]+float64(c.B)
		}
	}
	n := float64(r.Dx() * r.Dy())
	return [3]float64{sum[0] / n, sum[1] / n, sum[2] / n}
}

func TestVipsHonoursTheICCProfile(t *testing.T) {
	// The profile of this file swaps the channels: only a converter that honours it
	// shows each colour where its name is printed. The Go engine shows them swapped.
	img := pngThumbnail(t, Default, "formats/icc/codelogic-rgb-to-gbr-test.jpg", Spec{Width: 100})
	for name, c := range map[string]struct {
		patch   image.Rectangle
		channel int
	}{
		"red":   {image.Rect(45, 2, 55, 20), 0},
		"green": {image.Rect(2, 65, 20, 80), 1},
		"blue":  {image.Rect(80, 65, 98, 95), 2},
	} {
		rgb := meanRGB(img, c.patch)
		t.Logf("the %s patch: %.0f", name, rgb)
		for channel, value := range rgb {
			if channel == c.channel && value < 200 || channel != c.channel && value > 100 {
				t.Errorf("the %s patch is %.0f", name, rgb)
			}
		}
	}
}

func TestVipsConvertsWideGamutAndCMYKToSRGB(t *testing.T) {
	for _, c := range []struct {
		file        string
		mostlyAbove float64 // the mean difference from the unconverted pixels
		below       float64
	}{
		// Adobe RGB and Display P3 are converted: colours move, a little.
		{"photos/canon5d-adobergb-400x400.jpg", 1, 20},
		{"formats/icc/libvips-sample-a98.jpg", 1, 20},
		{"formats/icc/sharp-p3.png", 0.5, 20},
		// CMYK through its SWOP profile lands near the naive conversion, and far from
		// the inverted picture a wrong Adobe inversion gives (mean difference ~140).
		{"formats/jpeg/sharp-Channel_digital_image_CMYK_color.jpg", 1, 40},
		{"formats/jpeg/go-video-001.cmyk.jpeg", 0, 40},
	} {
		t.Run(c.file, func(t *testing.T) {
			is := is.New(t)
			spec := Spec{Width: 64, Height: 64}
			got := pngThumbnail(t, Default, c.file, spec)
			naive := pngThumbnail(t, goEngine{}, c.file, spec)
			diff := meanAbsDiff(got, naive)
			t.Logf("mean difference from the unconverted pixels: %.1f", diff)
			is.True(diff >= c.mostlyAbove)
			is.True(diff < c.below)
		})
	}
}

func TestVipsAppliesHEIFTransforms(t *testing.T) {
	// The four files are one picture stored with different irot/imir properties.
	spec := Spec{Width: 64, Height: 64}
	ref := pngThumbnail(t, Default, "exif-orientation/pillow-avif-rot0mir0.avif", spec)
	for _, file := range []string{"rot1mir1", "rot2mir0", "rot3mir1"} {
		t.Run(file, func(t *testing.T) {
			is := is.New(t)
			got := pngThumbnail(t, Default, "exif-orientation/pillow-avif-"+file+".avif", spec)
			is.Equal(got.Rect, ref.Rect)
			diff := meanAbsDiff(got, ref)
			t.Logf("%.1f against the upright file", diff)
			// The labels printed on each picture differ ("irot: 1"), the rest is the same.
			is.True(diff < 8)
			is.True(meanAbsDiff(got, orient(ref, 3)) > 3*diff) // not upside down
		})
	}
}

func TestVipsOnlyFormatsMakeThumbnails(t *testing.T) {
	for file, size := range map[string]image.Point{
		"formats/tiff/goimage-video-001-16bit.tiff":             image.Pt(64, 44),
		"formats/tiff/goimage-bw-gopher_ccittGroup4.tiff":       image.Pt(64, 23),
		"formats/avif/linku-fox.profile0.10bpc.yuv420.avif":     image.Pt(64, 43),
		"formats/avif/pillow-transparency.avif":                 image.Pt(64, 64),
		"formats/avif/libavif-colors-animated-8bpc.avif":        image.Pt(64, 64),
		"formats/heic/libheif-example.heic":                     image.Pt(64, 43),
		"formats/heic/libheif-rainbow-451x461.heic":             image.Pt(63, 64),
		"exif-orientation/pillow-avif-rot1mir1.avif":            image.Pt(64, 43),
		"formats/png16/sharp-Flag_of_the_Netherlands-16bit.png": image.Pt(64, 43),
	} {
		for _, format := range []Format{FormatJPEG, FormatWebP} {
			t.Run(file+"/"+string(format), func(t *testing.T) {
				is := is.New(t)
				spec := Spec{Width: 64, Height: 64, Format: format}
				res, err := Make(context.Background(), readTestdata(t, file), spec)
				is.NoErr(err)
				is.Equal(image.Pt(res.Width, res.Height), size)
				checkOutput(t, res, spec)
			})
		}
	}
}

func TestVipsRefusesBombsOfItsOwnFormatsFromTheHeader(t *testing.T) {
	// A TIFF whose first directory declares 100000x100000 pixels and nothing else.
	tiff := []byte("II*\x00\x08\x00\x00\x00\x02\x00")
	for _, tag := range []uint16{256, 257} {
		tiff = binary.LittleEndian.AppendUint16(tiff, tag)
		tiff = binary.LittleEndian.AppendUint16(tiff, 4) // LONG
		tiff = binary.LittleEndian.AppendUint32(tiff, 1)
		tiff = binary.LittleEndian.AppendUint32(tiff, 100_000)
	}
	tiff = append(tiff, 0, 0, 0, 0)
	for name, c := range map[string]struct {
		src     []byte
		message string
	}{
		"avif": {readTestdata(t, "hostile/bomb/libvips-17000x17000.avif"), "the image is 17000x17000 pixels (289000000); the limit is 50000000 pixels"},
		"tiff": {tiff, "the image is 100000x100000 pixels (10000000000); the limit is 50000000 pixels"},
	} {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			_, err := Make(context.Background(), c.src, Spec{Width: 64})
			is.Equal(CodeOf(err), CodeTooManyPixels)
			var e *Error
			is.True(errors.As(err, &e))
			is.Equal(e.Message, c.message)
		})
	}
}

func TestTIFFSize(t *testing.T) {
	entry := func(order binary.AppendByteOrder, tag, kind uint16, value uint32) []byte {
		b := order.AppendUint16(nil, tag)
		b = order.AppendUint16(b, kind)
		b = order.AppendUint32(b, 1)
		if kind == 3 {
			b = order.AppendUint16(b, uint16(value))
			return append(b, 0, 0)
		}
		return order.AppendUint32(b, value)
	}
	big := append([]byte("MM\x00*\x00\x00\x00\x08\x00\x03"), entry(binary.BigEndian, 254, 4, 0)...)
	big = append(big, entry(binary.BigEndian, 256, 3, 640)...)
	big = append(big, entry(binary.BigEndian, 257, 4, 480)...)
	little := append([]byte("II*\x00\x08\x00\x00\x00\x02\x00"), entry(binary.LittleEndian, 256, 4, 3)...)
	little = append(little, entry(binary.LittleEndian, 257, 3, 2)...)
	bigTIFF := []byte("II+\x00\x08\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00")
	bigTIFF = append(bigTIFF, 0x00, 0x01, 16, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0)
	for _, c := range []struct {
		name          string
		src           []byte
		width, height int
		fails         bool
	}{
		{"big-endian", big, 640, 480, false},
		{"little-endian", little, 3, 2, false},
		{"BigTIFF", bigTIFF, 9, 0, false}, // no height: readHeaderFor refuses 9x0
		{"directory past the end", []byte("II*\x00\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), 0, 0, true},
		{"entries past the end", little[:20], 0, 0, true},
		{"too short", []byte("II*\x00"), 0, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			w, h, err := tiffSize(c.src)
			is.Equal(err != nil, c.fails)
			is.Equal([2]int{w, h}, [2]int{c.width, c.height})
		})
	}
}

func TestHEIFSizeComesFromThePrimaryItem(t *testing.T) {
	// libheif-example.heic holds two full images and their thumbnails: the primary
	// one's size is the file's.
	for file, size := range map[string][2]int{
		"formats/heic/libheif-example.heic":          {1280, 854},
		"formats/heic/libheif-rainbow-451x461.heic":  {451, 461}, // clap of 452x462
		"exif-orientation/pillow-avif-rot1mir1.avif": {640, 427}, // irot of 427x640
		"hostile/bomb/libvips-17000x17000.avif":      {17000, 17000},
	} {
		w, h, err := heifSize(readTestdata(t, file))
		is.New(t).NoErr(err)
		is.New(t).Equal([2]int{w, h}, size)
	}
	for _, src := range []string{"", "\x00\x00\x00\x08meta", "\x00\x00\x00\x10ftypavif\x00\x00\x00\x00", "\x00\x00\x00\xffmeta\x00\x00\x00\x00"} {
		_, _, err := heifSize([]byte(src))
		is.New(t).True(err != nil)
	}
}

func TestVipsStripsWebPMetadata(t *testing.T) {
	is := is.New(t)
	res, err := Make(context.Background(), readTestdata(t, "photos/Storm.jpg"), Spec{Width: 64, Format: FormatWebP})
	is.NoErr(err)
	var chunks []string
	webpChunks(res.Data, func(id string, _ []byte) bool { chunks = append(chunks, id); return true })
	is.True(len(chunks) >= 1)
	for _, id := range chunks {
		is.True(id == "VP8X" || id == "VP8 " || id == "VP8L" || id == "ALPH")
	}
	is.Equal(int(binary.LittleEndian.Uint32(res.Data[4:]))+8, len(res.Data))
}

func TestVipsKillsAJobPastItsDeadline(t *testing.T) {
	is := is.New(t)
	// A baseline JPEG is decoded strip by strip, so a kill stops it part-way; a
	// progressive one is decoded by libjpeg in one call, which a kill cannot stop.
	src := readTestdata(t, "photos/IMG_9424.JPG")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Make(ctx, src, Spec{Width: 256, Height: 256})
	t.Logf("with a 2 ms deadline the job returned after %v", time.Since(start))
	is.Equal(CodeOf(err), CodeTimeout)
	is.True(errors.Is(err, context.DeadlineExceeded))
	_, err = Make(context.Background(), src, Spec{Width: 64}) // libvips is still fine
	is.NoErr(err)
}

// TestVipsMemoryStaysFlat makes 100 thumbnails of a 13 MP progressive JPEG, one at a
// time and then two at once, and checks the resident set does not grow with the
// number of jobs: libvips's memory is invisible to Go's heap figures. A process's RSS
// carries whatever the tests before it left, so the measurement runs in a child
// process of its own (this test binary again, running only memoryChild), and only
// the child's figures are judged.
func TestVipsMemoryStaysFlat(t *testing.T) {
	if os.Getenv(memoryChildEnv) != "" {
		memoryChild(t)
		return
	}
	if testing.Short() {
		t.Skip("makes 200 thumbnails of a 13 MP photo")
	}
	is := is.New(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestVipsMemoryStaysFlat$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), memoryChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child process:\n%s", out)
	is.NoErr(err)                                                             // the child's own assertions held
	is.True(bytes.Contains(out, []byte("--- PASS: TestVipsMemoryStaysFlat"))) // the child ran the measurement
}

const memoryChildEnv = "THUMBNAILED_TEST_MEMORY_CHILD"

// memoryChild is the measurement, in a process that has done nothing else.
//   - no leak: with glibc's free memory handed back after every job, the resident
//     set after a job comes back to one floor; the floor of the last ten jobs is
//     that of jobs 10-20 (medians, so that a job still running in the other slot
//     does not count).
//   - the production policy (vipsTrimAbove): the resident set stays bounded,
//     whatever glibc keeps between jobs.
func memoryChild(t *testing.T) {
	src := readTestdata(t, "photos/Dragonfly_by_Bolly.jpg")
	spec := Spec{Width: 256, Height: 256}
	policy := vipsTrimAbove
	defer func() { vipsTrimAbove = policy }()
	run := func(t *testing.T, jobs, workers int) []int64 {
		is := is.New(t)
		var mu sync.Mutex
		var rss []int64
		next := make(chan struct{})
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range next {
					_, err := Make(context.Background(), src, spec)
					is.NoErr(err)
					r := residentBytes()
					mu.Lock()
					rss = append(rss, r)
					mu.Unlock()
				}
			})
		}
		for range jobs {
			next <- struct{}{}
		}
		close(next)
		wg.Wait()
		return rss
	}
	median := func(xs []int64) int64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2]
	}
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("no leak, %d at once", workers), func(t *testing.T) {
			is := is.New(t)
			vipsTrimAbove = 0
			start := time.Now()
			rss := run(t, 60, workers)
			early, late := median(rss[10:20]), median(rss[len(rss)-10:])
			t.Logf("60 jobs, %d at once, trimmed after each, in %v: RSS after a job, median of jobs 10-20 %d MiB, of the last 10 %d MiB",
				workers, time.Since(start).Round(time.Millisecond), early>>20, late>>20)
			is.True(late <= early+16<<20) // the floor does not grow with the number of jobs
		})
	}
	t.Run("production policy, 2 at once", func(t *testing.T) {
		is := is.New(t)
		vipsTrimAbove = policy
		start := time.Now()
		rss := run(t, 100, 2)
		t.Logf("100 jobs, 2 at once, trimmed above %d MiB, in %v: RSS after a job at most %d MiB, after the last %d MiB, VmHWM %s",
			policy>>20, time.Since(start).Round(time.Millisecond), slices.Max(rss)>>20, rss[len(rss)-1]>>20, procStatus("VmHWM"))
		is.True(slices.Max(rss) <= policy+192<<20) // bounded: the trim line and at most two jobs' working sets
	})
}
