package jpegscale

import (
	"bytes"
	"fmt"
	"image/jpeg"
	"testing"
)

// BenchmarkDecode compares image/jpeg's full-size decoding with Decode at
// every scale, on the corpus's 12 MP baseline and 13 MP progressive photos and
// a 2.5 MP baseline one.
//
//	go test -run '^$' -bench Decode -benchmem ./thumbnail/internal/jpegscale/
func BenchmarkDecode(b *testing.B) {
	for _, file := range []string{
		"photos/IMG_9424.JPG",            // 4032x3024 baseline 4:2:0, restart markers
		"photos/Dragonfly_by_Bolly.jpg",  // 4224x3168 progressive 4:2:2
		"photos/Wine_by_Jakkub_Mede.jpg", // 2560x3837 progressive 4:2:2
		"photos/Storm.jpg",               // 1920x1280 baseline 4:2:2
	} {
		src := readTestdata(b, file)
		b.Run(file[len("photos/"):]+"/image-jpeg", func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := jpeg.Decode(bytes.NewReader(src)); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, denom := range denoms {
			b.Run(fmt.Sprintf("%s/1_%d", file[len("photos/"):], denom), func(b *testing.B) {
				b.SetBytes(int64(len(src)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Decode(src, denom); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
