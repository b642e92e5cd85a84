package thumbnail

import (
	"encoding/binary"
	"regexp"
	"strconv"
	"testing"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/thumbnail/internal/testcorpus"
)

// tiffWith builds EXIF TIFF data whose IFD0 holds an unrelated tag, then the
// orientation tag with the given type and value.
func tiffWith(order binary.ByteOrder, kind uint16, value uint32) []byte {
	b := make([]byte, 8+2+2*12+4)
	if order == binary.LittleEndian {
		copy(b, "II")
	} else {
		copy(b, "MM")
	}
	order.PutUint16(b[2:], 42)
	order.PutUint32(b[4:], 8)
	order.PutUint16(b[8:], 2)
	entry := b[10:]
	order.PutUint16(entry, 0x010f) // Make, ASCII
	order.PutUint16(entry[2:], 2)
	entry = b[22:]
	order.PutUint16(entry, tagOrientation)
	order.PutUint16(entry[2:], kind)
	order.PutUint32(entry[4:], 1)
	if kind == 3 {
		order.PutUint16(entry[8:], uint16(value))
	} else {
		order.PutUint32(entry[8:], value)
	}
	return b
}

func TestTIFFOrientation(t *testing.T) {
	is := is.New(t)
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		for v := uint32(1); v <= 8; v++ {
			is.Equal(tiffOrientation(tiffWith(order, 3, v)), int(v)) // SHORT
			is.Equal(tiffOrientation(tiffWith(order, 4, v)), int(v)) // LONG
		}
		is.Equal(tiffOrientation(tiffWith(order, 3, 0)), 1)      // 0 is not an orientation
		is.Equal(tiffOrientation(tiffWith(order, 3, 9)), 1)      // nor is 9
		is.Equal(tiffOrientation(tiffWith(order, 2, 0x36)), 1)   // ASCII "6": garbage
		is.Equal(tiffOrientation(tiffWith(order, 3, 0xff06)), 1) // out of range
	}
	// Every truncation of valid data is read safely, as upright.
	full := tiffWith(binary.BigEndian, 3, 6)
	for n := range len(full) - 1 {
		got := tiffOrientation(full[:n])
		is.True(got == 1 || n >= 34 && got == 6)
	}
	is.Equal(tiffOrientation([]byte("XX*\x00\x08\x00\x00\x00")), 1)                 // unknown byte order
	is.Equal(tiffOrientation([]byte("II\x2b\x00\x08\x00\x00\x00\x00\x00")), 1)      // not 42
	is.Equal(tiffOrientation([]byte("II*\x00\xff\xff\xff\xff\x00\x00\x00\x00")), 1) // IFD out of bounds
	is.Equal(tiffOrientation([]byte("II*\x00\x00\x00\x00\x00\x00\x00\x00\x00")), 1) // IFD inside the header
}

func TestJPEGOrientation(t *testing.T) {
	is := is.New(t)
	app1 := append([]byte("Exif\x00\x00"), tiffWith(binary.LittleEndian, 3, 8)...)
	jpeg := []byte{0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 'J', 'F', 0xff, 0xff} // APP0, then a fill byte
	jpeg = append(jpeg, 0xff, 0xe1, byte((len(app1)+2)>>8), byte(len(app1)+2))
	jpeg = append(jpeg, app1...)
	jpeg = append(jpeg, 0xff, 0xda, 0, 2)
	is.Equal(jpegOrientation(jpeg), 8)
	for n := range len(jpeg) {
		is.True(jpegOrientation(jpeg[:n]) == 1 || jpegOrientation(jpeg[:n]) == 8) // never panics
	}
	is.Equal(jpegOrientation([]byte{0xff, 0xd8, 0xff, 0xe1, 0x00, 0x01}), 1) // bad segment length
	is.Equal(jpegOrientation([]byte("GIF89a")), 1)
}

func TestOrientationOfCorpusFiles(t *testing.T) {
	name := regexp.MustCompile(`_(\d)\.(jpg|webp)$`)
	for _, row := range testcorpus.Read(t, "testdata") {
		m := name.FindStringSubmatch(row.File)
		if row.Category != "exif-orientation" || m == nil {
			continue
		}
		want, _ := strconv.Atoi(m[1])
		if want == 0 {
			want = 1 // the tag says 0, which means nothing: upright
		}
		format := FormatJPEG
		if m[2] == "webp" {
			format = FormatWebP
		}
		is.New(t).Equal(orientationOf(format, readTestdata(t, row.File)), want) // row.File
	}
	is.New(t).Equal(orientationOf(FormatJPEG, readTestdata(t, "photos/Storm.jpg")), 1)
	is.New(t).Equal(orientationOf(FormatWebP, readTestdata(t, "formats/webp/goimage-tux.lossless.webp")), 1)
}

func BenchmarkJPEGOrientation(b *testing.B) {
	src := readTestdata(b, "exif-orientation/recurser-Landscape_6.jpg")
	b.ReportAllocs()
	for b.Loop() {
		if jpegOrientation(src) != 6 {
			b.Fatal("wrong orientation")
		}
	}
}
