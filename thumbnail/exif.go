package thumbnail

import (
	"bytes"
	"encoding/binary"
)

// The EXIF orientation tag says how the stored pixels must be turned to stand upright.
// Cameras store the sensor's rows as they came and set this tag instead of rotating.
// Every reader here is bounds-checked and answers 1 (upright) for anything missing,
// out of range or malformed: a wrong tag must never fail a thumbnail.

const tagOrientation = 0x0112

// orientationOf reads the EXIF orientation (1..8) of an image of the given format.
func orientationOf(format Format, src []byte) int {
	switch format {
	case FormatJPEG:
		return jpegOrientation(src)
	case FormatWebP:
		return webpOrientation(src)
	}
	return 1
}

// jpegOrientation reads the orientation from the first APP1 "Exif" segment.
func jpegOrientation(src []byte) int {
	orientation := 1
	jpegSegments(src, func(marker byte, payload []byte) bool {
		if marker == 0xe1 && bytes.HasPrefix(payload, []byte("Exif\x00\x00")) {
			orientation = tiffOrientation(payload[6:])
			return false
		}
		return true
	})
	return orientation
}

// webpOrientation reads the orientation from the "EXIF" chunk of an extended WebP.
// The chunk should hold the TIFF data directly, but some writers keep the JPEG-style
// "Exif\0\0" prefix, so both are accepted.
func webpOrientation(src []byte) int {
	orientation := 1
	webpChunks(src, func(id string, data []byte) bool {
		if id == "EXIF" {
			orientation = tiffOrientation(bytes.TrimPrefix(data, []byte("Exif\x00\x00")))
			return false
		}
		return true
	})
	return orientation
}

// tiffOrientation finds tag 0x0112 in IFD0 of TIFF-structured EXIF data, in either
// byte order.
func tiffOrientation(b []byte) int {
	if len(b) < 8 {
		return 1
	}
	var order binary.ByteOrder
	switch string(b[:2]) {
	case "II":
		order = binary.LittleEndian
	case "MM":
		order = binary.BigEndian
	default:
		return 1
	}
	if order.Uint16(b[2:]) != 42 {
		return 1
	}
	ifd := uint64(order.Uint32(b[4:]))
	if ifd < 8 || ifd+2 > uint64(len(b)) {
		return 1
	}
	count := int(order.Uint16(b[ifd:]))
	for i := range count {
		entry := int(ifd) + 2 + 12*i
		if entry+12 > len(b) {
			return 1
		}
		if order.Uint16(b[entry:]) != tagOrientation {
			continue
		}
		var value uint32
		switch kind := order.Uint16(b[entry+2:]); {
		case kind == 3: // SHORT, the type the standard prescribes
			value = uint32(order.Uint16(b[entry+8:]))
		case kind == 4: // LONG, written by a few tools
			value = order.Uint32(b[entry+8:])
		default:
			return 1
		}
		if value < 1 || value > 8 || order.Uint32(b[entry+4:]) == 0 {
			return 1
		}
		return int(value)
	}
	return 1
}

// jpegSegments calls fn with each marker segment before the first scan, stopping when
// fn returns false. It stops quietly at anything malformed: callers only look for hints
// and leave judging the file to the decoder.
func jpegSegments(src []byte, fn func(marker byte, payload []byte) bool) {
	if len(src) < 4 || src[0] != 0xff || src[1] != 0xd8 {
		return
	}
	p := 2
	for p+4 <= len(src) {
		if src[p] != 0xff {
			return
		}
		marker := src[p+1]
		switch {
		case marker == 0xff: // fill byte before a marker
			p++
			continue
		case marker == 0x01, marker == 0xd8, marker >= 0xd0 && marker <= 0xd7: // no payload
			p += 2
			continue
		case marker == 0xd9, marker == 0xda: // end of image, start of scan
			return
		}
		length := int(src[p+2])<<8 | int(src[p+3])
		if length < 2 || p+2+length > len(src) {
			return
		}
		if !fn(marker, src[p+4:p+2+length]) {
			return
		}
		p += 2 + length
	}
}

// webpChunks calls fn with each chunk of a WebP RIFF container, stopping when fn
// returns false or at the first chunk that runs past the data.
func webpChunks(src []byte, fn func(id string, data []byte) bool) {
	if len(src) < 12 || string(src[:4]) != "RIFF" || string(src[8:12]) != "WEBP" {
		return
	}
	end := uint64(binary.LittleEndian.Uint32(src[4:])) + 8
	end = min(end, uint64(len(src))) // tolerate a RIFF size that disagrees with the file
	p := uint64(12)
	for p+8 <= end {
		id := string(src[p : p+4])
		size := uint64(binary.LittleEndian.Uint32(src[p+4:]))
		if p+8+size > end {
			return
		}
		if !fn(id, src[p+8:p+8+size]) {
			return
		}
		p += 8 + size + size&1 // chunks are padded to an even length
	}
}
