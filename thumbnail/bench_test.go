package thumbnail

import (
	"bytes"
	"context"
	"image/jpeg"
	"path"
	"syscall"
	"testing"
	"time"

	"github.com/nfnt/resize"

	"github.com/thumbnailed/thumbnailed/thumbnail/internal/testcorpus"
)

// BenchmarkMake makes the house thumbnail (256 px contain, JPEG q80) of every corpus
// photo. Record with: go test -run '^$' -bench . -benchtime 5x ./thumbnail/
func BenchmarkMake(b *testing.B) {
	eachPhoto(b, func(b *testing.B, _ testcorpus.Row, src []byte) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			if _, err := Make(context.Background(), src, Spec{Width: 256, Height: 256, Quality: 80}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// eachPhoto runs bench as a sub-benchmark for every corpus photo.
func eachPhoto(b *testing.B, bench func(b *testing.B, row testcorpus.Row, src []byte)) {
	for _, row := range testcorpus.Read(b, "testdata") {
		if row.Category != "photo" {
			continue
		}
		src := readTestdata(b, row.File)
		b.Run(path.Base(row.File), func(b *testing.B) {
			b.ReportAllocs()
			bench(b, row, src)
		})
	}
}

// BenchmarkNaive is the same thumbnail made the obvious way (decode, Lanczos3 over the
// whole image, encode), the baseline BenchmarkMake is measured against. The decode
// alone is most of what remains of BenchmarkMake.
func BenchmarkNaive(b *testing.B) {
	eachPhoto(b, func(b *testing.B, row testcorpus.Row, src []byte) {
		for b.Loop() {
			img, err := jpeg.Decode(bytes.NewReader(src))
			if err != nil {
				b.Fatal(err)
			}
			width, height := uint(256), uint(0)
			if row.Height > row.Width {
				width, height = 0, 256
			}
			var buf bytes.Buffer
			if err := jpeg.Encode(&buf, resize.Resize(width, height, img, resize.Lanczos3), &jpeg.Options{Quality: 80}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodeOnly is the standard library's JPEG decode of each photo: the floor
// for any pure-Go pipeline without DCT-domain scaling.
func BenchmarkDecodeOnly(b *testing.B) {
	eachPhoto(b, func(b *testing.B, _ testcorpus.Row, src []byte) {
		for b.Loop() {
			if _, err := jpeg.Decode(bytes.NewReader(src)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOutputFormat is the same thumbnail of a mid-size photo in each output
// format, to weigh the WebP encoder against the rest.
func BenchmarkOutputFormat(b *testing.B) {
	src := readTestdata(b, "photos/Storm.jpg")
	for _, format := range []Format{FormatJPEG, FormatPNG, FormatWebP} {
		b.Run(string(format), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Make(context.Background(), src, Spec{Width: 256, Height: 256, Format: format}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeWebP is the WebP encoder alone on a 256 px thumbnail. The encoder
// is libwebp: the system's libwebp.so when present (loaded without cgo), else the
// same library compiled to WebAssembly and run by wazero (build tag nodynamic forces
// that), whose first call also compiles the module.
func BenchmarkEncodeWebP(b *testing.B) {
	photo, err := jpeg.Decode(bytes.NewReader(readTestdata(b, "photos/Storm.jpg")))
	if err != nil {
		b.Fatal(err)
	}
	img := scaleImage(photo, 256, 171)
	if _, err := encode(img, FormatWebP, 80); err != nil { // the one-off start-up, not timed
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encode(img, FormatWebP, 80); err != nil {
			b.Fatal(err)
		}
	}
}

// setJobs are the jobs BenchmarkMakeSet and TestMeasureSetMemory compare, on a 12 MP
// JPEG: one 1024 px output; 1024, 512 and 256 px outputs in one job; and the same
// three as three jobs.
var setJobs = []struct {
	name string
	jobs [][]Output
}{
	{"one-1024", [][]Output{{{Name: "1024", Width: 1024, Height: 1024}}}},
	{"set-1024-512-256", [][]Output{{{Name: "1024", Width: 1024, Height: 1024}, {Name: "512", Width: 512, Height: 512}, {Name: "256", Width: 256, Height: 256}}}},
	{"three-jobs", [][]Output{{{Name: "1024", Width: 1024, Height: 1024}}, {{Name: "512", Width: 512, Height: 512}}, {{Name: "256", Width: 256, Height: 256}}}},
}

const setPhoto = "photos/IMG_9424.JPG"

// BenchmarkMakeSet: record with
// go test -run '^$' -bench MakeSet -benchtime 10x ./thumbnail/ (and -tags vips).
// Besides ns/op it reports the CPU time per op (cpu-ms/op: user and system, all
// threads; steadier than wall time on a shared machine) and each stage's share.
func BenchmarkMakeSet(b *testing.B) {
	src := readTestdata(b, setPhoto)
	for _, c := range setJobs {
		b.Run(c.name, func(b *testing.B) {
			benchmarkJobs(b, src, c.jobs)
		})
	}
}

func benchmarkJobs(b *testing.B, src []byte, jobs [][]Output) {
	b.ReportAllocs()
	stages := map[string]time.Duration{}
	cpu := cpuTime()
	for b.Loop() {
		for _, outputs := range jobs {
			set, err := MakeSet(context.Background(), src, outputs, 0)
			if err != nil {
				b.Fatal(err)
			}
			for stage, d := range set.Timings {
				stages[stage] += d
			}
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
	for stage, d := range stages {
		b.ReportMetric(float64(d)/float64(b.N)/1e6, stage+"-ms/op")
	}
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// BenchmarkGravity is a 256x256 cover of a 12 MP JPEG with each gravity: what the
// smart crops cost over the centre one.
func BenchmarkGravity(b *testing.B) {
	src := readTestdata(b, setPhoto)
	for _, g := range []Gravity{GravityCenter, GravityAttention, GravityEntropy} {
		b.Run(string(g), func(b *testing.B) {
			benchmarkJobs(b, src, [][]Output{{{Width: 256, Height: 256, Fit: FitCover, Gravity: g}}})
		})
	}
}

func runSetJobs(t testing.TB, src []byte, jobs [][]Output) {
	for _, outputs := range jobs {
		if _, err := MakeSet(context.Background(), src, outputs, 0); err != nil {
			t.Fatal(err)
		}
	}
}
