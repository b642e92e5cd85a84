package thumbnail

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// inputFormats lists every format an engine may accept, in the order messages name them.
var inputFormats = []Format{FormatJPEG, FormatPNG, FormatGIF, FormatWebP, FormatTIFF, FormatAVIF, FormatHEIC}

var formatNames = map[Format]string{
	FormatJPEG: "JPEG",
	FormatPNG:  "PNG",
	FormatGIF:  "GIF",
	FormatWebP: "WebP",
	FormatTIFF: "TIFF",
	FormatAVIF: "AVIF",
	FormatHEIC: "HEIC",
}

var contentTypes = map[Format]string{
	FormatJPEG: "image/jpeg",
	FormatPNG:  "image/png",
	FormatWebP: "image/webp",
}

// Sniff tells the format from the bytes alone, never from a name or a declared type.
// It answers an *Error with CodeUnsupportedFormat for anything the default engine does
// not accept, naming what the file is when it can tell; and CodeCorruptImage for a file
// that is plainly an accepted format with a damaged signature.
func Sniff(src []byte) (Format, error) {
	return sniffFor(Default, src)
}

func sniffFor(e Engine, src []byte) (Format, error) {
	format, what := detect(src)
	if format == FormatPNG && what == damagedPNG {
		return "", newError(CodeCorruptImage, nil, "the file looks like a PNG image but its signature is damaged")
	}
	if format != "" && e.Accepts(format) {
		return format, nil
	}
	return "", newError(CodeUnsupportedFormat, nil, "the file is %s; this build accepts %s", what, acceptedList(e))
}

const damagedPNG = "a PNG image with a damaged signature"

// detect recognises a format by its magic bytes. format is "" for anything no engine
// of ours can decode; what always describes the file for a message ("a TIFF image").
func detect(src []byte) (format Format, what string) {
	has := func(offset int, magic string) bool {
		return len(src) >= offset+len(magic) && string(src[offset:offset+len(magic)]) == magic
	}
	switch {
	case len(src) == 0:
		return "", "empty"
	case has(0, "\xff\xd8\xff"):
		return FormatJPEG, "a JPEG image"
	case has(0, "\x89PNG\r\n\x1a\n"):
		return FormatPNG, "a PNG image"
	case has(12, "IHDR"):
		// Every PNG starts with its IHDR chunk at offset 12: when that is there but
		// the signature is not, the file was mangled in transit (FTP text mode, say).
		return FormatPNG, damagedPNG
	case has(0, "GIF87a"), has(0, "GIF89a"):
		return FormatGIF, "a GIF image"
	case has(0, "RIFF") && has(8, "WEBP"):
		return FormatWebP, "a WebP image"
	case has(0, "II*\x00"), has(0, "MM\x00*"), has(0, "II+\x00"), has(0, "MM\x00+"):
		return FormatTIFF, "a TIFF image"
	case has(4, "ftyp"):
		return detectISOBMFF(src)
	case has(0, "BM"):
		return "", "a BMP image"
	case has(0, "\x00\x00\x00\x0cjP  \r\n\x87\n"), has(0, "\xff\x4f\xff\x51"):
		return "", "a JPEG 2000 image"
	case has(0, "\xff\x0a"), has(0, "\x00\x00\x00\x0cJXL \r\n\x87\n"):
		return "", "a JPEG XL image"
	case has(0, "\x00\x00\x01\x00"):
		return "", "an ICO icon"
	case has(0, "8BPS"):
		return "", "a Photoshop document"
	case has(0, "%PDF-"):
		return "", "a PDF document"
	case has(0, "PK\x03\x04"):
		return "", "a ZIP archive"
	case has(0, "RIFF"):
		return "", "a RIFF file that is not WebP (audio or video)"
	}
	return "", detectText(src)
}

// heifBrands maps ISO base media brands to the image format they announce.
var heifBrands = map[string]Format{
	"avif": FormatAVIF, "avis": FormatAVIF,
	"heic": FormatHEIC, "heix": FormatHEIC, "heim": FormatHEIC, "heis": FormatHEIC,
	"hevc": FormatHEIC, "hevx": FormatHEIC, "hevm": FormatHEIC, "hevs": FormatHEIC,
	"mif1": FormatHEIC, "msf1": FormatHEIC,
}

// detectISOBMFF reads the brands of an ISO base media "ftyp" box: the major brand,
// then the compatible ones. AVIF wins over plain HEIF when both are listed.
func detectISOBMFF(src []byte) (Format, string) {
	size := int(src[0])<<24 | int(src[1])<<16 | int(src[2])<<8 | int(src[3])
	if size < 16 || size > len(src) {
		size = min(len(src), 64)
	}
	var found Format
	for p := 8; p+4 <= size; p += 4 {
		if p == 12 {
			continue // minor version, not a brand
		}
		f, ok := heifBrands[string(src[p:p+4])]
		if ok && (found == "" || f == FormatAVIF) {
			found = f
		}
	}
	switch found {
	case FormatAVIF:
		return FormatAVIF, "an AVIF image"
	case FormatHEIC:
		return FormatHEIC, "a HEIC image"
	}
	return "", "an ISO media file (such as MP4 video), not an image"
}

// detectText names the text documents people most often upload by mistake, or on purpose.
func detectText(src []byte) string {
	head := src[:min(len(src), 1024)]
	head = bytes.TrimPrefix(head, []byte("\xef\xbb\xbf"))
	lower := strings.ToLower(strings.TrimSpace(string(head)))
	switch {
	case strings.HasPrefix(lower, "<svg"),
		strings.HasPrefix(lower, "<?xml") && strings.Contains(lower, "<svg"):
		return "an SVG document"
	case strings.HasPrefix(lower, "<!doctype html"), strings.HasPrefix(lower, "<html"),
		strings.HasPrefix(lower, "<head"), strings.HasPrefix(lower, "<body"):
		return "an HTML document"
	case strings.HasPrefix(lower, "<?php"):
		return "a PHP script"
	case strings.HasPrefix(lower, "<?xml"):
		return "an XML document"
	case strings.HasPrefix(lower, "push graphic-context"), strings.HasPrefix(lower, "viewbox"):
		return "an ImageMagick vector script (MVG)"
	case utf8.Valid(head) && !bytes.ContainsRune(head, 0):
		return "a text file"
	}
	return "not an image format this build recognises"
}

// acceptedList names the input formats of e for a message: "JPEG, PNG, GIF and WebP".
func acceptedList(e Engine) string {
	var names []string
	for _, f := range inputFormats {
		if e.Accepts(f) {
			names = append(names, formatNames[f])
		}
	}
	switch len(names) {
	case 0:
		return "no format"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
