//go:build vips

package thumbnail

import (
	"encoding/binary"
	"errors"
	"math"
)

// The formats only the libvips engine accepts get header readers of their own, in
// Go: their size is guarded before libvips, libtiff or libheif parse a byte.
func init() {
	headerReaders[FormatTIFF] = readTIFFHeader
	headerReaders[FormatAVIF] = func(src []byte) (Header, error) { return readHEIFHeader(FormatAVIF, src) }
	headerReaders[FormatHEIC] = func(src []byte) (Header, error) { return readHEIFHeader(FormatHEIC, src) }
}

var (
	errTIFFHeader = errors.New("tiff: no readable first image directory")
	errHEIFHeader = errors.New("heif: no size for the primary image")
)

// readTIFFHeader reads the size of the first image (IFD0), the page libvips loads,
// from a classic or a BigTIFF file.
func readTIFFHeader(src []byte) (Header, error) {
	width, height, err := tiffSize(src)
	if err != nil {
		return Header{}, newError(CodeCorruptImage, err, "the file is a damaged TIFF image")
	}
	return Header{Format: FormatTIFF, Width: width, Height: height}, nil
}

func tiffSize(b []byte) (width, height int, err error) {
	if len(b) < 16 {
		return 0, 0, errTIFFHeader
	}
	var order binary.ByteOrder = binary.LittleEndian
	if string(b[:2]) == "MM" {
		order = binary.BigEndian
	}
	// An IFD is a count, then entries of tag (2 bytes), type (2), count and value.
	var ifd, countSize, entrySize, valueAt uint64
	switch order.Uint16(b[2:]) {
	case 42:
		ifd, countSize, entrySize, valueAt = uint64(order.Uint32(b[4:])), 2, 12, 8
	case 43: // BigTIFF: 8-byte offsets and counts
		ifd, countSize, entrySize, valueAt = order.Uint64(b[8:]), 8, 20, 12
	default:
		return 0, 0, errTIFFHeader
	}
	size := uint64(len(b))
	if ifd < 8 || ifd > size-countSize {
		return 0, 0, errTIFFHeader
	}
	count := uint64(order.Uint16(b[ifd:]))
	if countSize == 8 {
		count = order.Uint64(b[ifd:])
	}
	for i := range min(count, size/entrySize) {
		entry := ifd + countSize + i*entrySize
		if entry > size-entrySize {
			return 0, 0, errTIFFHeader
		}
		tag := order.Uint16(b[entry:])
		if tag != 256 && tag != 257 { // ImageWidth, ImageLength
			continue
		}
		value := b[entry+valueAt:] // stored in the entry itself
		var n uint64
		switch order.Uint16(b[entry+2:]) {
		case 3: // SHORT
			n = uint64(order.Uint16(value))
		case 4: // LONG
			n = uint64(order.Uint32(value))
		case 16: // LONG8, BigTIFF only
			if countSize != 8 {
				return 0, 0, errTIFFHeader
			}
			n = order.Uint64(value)
		default:
			return 0, 0, errTIFFHeader
		}
		if tag == 256 {
			width = clampSide(n)
		} else {
			height = clampSide(n)
		}
	}
	return width, height, nil
}

// clampSide keeps a declared side within int32, where the pixel guard refuses it
// rather than an overflow hiding it.
func clampSide(n uint64) int { return int(min(n, math.MaxInt32)) }

// readHEIFHeader reads the size of the primary image of a HEIF file (HEIC or AVIF)
// from its ispe property, turned by its irot property as libheif turns it.
func readHEIFHeader(format Format, src []byte) (Header, error) {
	width, height, err := heifSize(src)
	if err != nil {
		return Header{}, newError(CodeCorruptImage, err, "the file is a damaged %s image", formatNames[format])
	}
	return Header{Format: format, Width: width, Height: height}, nil
}

// isoBoxes calls fn with the type and body of each ISO base media box in b, stopping
// when fn returns false; a box that runs past the end is an error.
func isoBoxes(b []byte, fn func(kind string, body []byte) bool) error {
	for len(b) >= 8 {
		size, header := uint64(binary.BigEndian.Uint32(b)), uint64(8)
		switch size {
		case 0: // to the end of the file
			size = uint64(len(b))
		case 1: // 64-bit size after the type
			if len(b) < 16 {
				return errHEIFHeader
			}
			size, header = binary.BigEndian.Uint64(b[8:]), 16
		}
		if size < header || size > uint64(len(b)) {
			return errHEIFHeader
		}
		if !fn(string(b[4:8]), b[header:size]) {
			return nil
		}
		b = b[size:]
	}
	return nil
}

// heifSize walks meta -> pitm (the primary item), iprp -> ipco (the properties) and
// ipma (which properties belong to which item).
func heifSize(src []byte) (width, height int, err error) {
	var meta []byte
	err = isoBoxes(src, func(kind string, body []byte) bool {
		if kind == "meta" && len(body) >= 4 {
			meta = body[4:] // a full box: version and flags first
			return false
		}
		return true
	})
	if err != nil || meta == nil {
		return 0, 0, errHEIFHeader
	}
	primary := uint32(math.MaxUint32)
	var properties [][2]string // kind, body of each property in ipco, in order
	var ipma []byte
	err = isoBoxes(meta, func(kind string, body []byte) bool {
		switch kind {
		case "pitm":
			if len(body) >= 6 && body[0] == 0 {
				primary = uint32(binary.BigEndian.Uint16(body[4:]))
			} else if len(body) >= 8 {
				primary = binary.BigEndian.Uint32(body[4:])
			}
		case "iprp":
			err = isoBoxes(body, func(kind string, body []byte) bool {
				switch kind {
				case "ipco":
					err = isoBoxes(body, func(kind string, body []byte) bool {
						properties = append(properties, [2]string{kind, string(body)})
						return true
					})
				case "ipma":
					ipma = body
				}
				return err == nil
			})
		}
		return err == nil
	})
	if err != nil || primary == math.MaxUint32 {
		return 0, 0, errHEIFHeader
	}
	rotated := false
	found := false
	var clap []byte
	for _, index := range heifAssociations(ipma, primary) {
		if index < 1 || index > len(properties) {
			continue
		}
		kind, body := properties[index-1][0], []byte(properties[index-1][1])
		switch {
		case kind == "ispe" && len(body) >= 12:
			width = clampSide(uint64(binary.BigEndian.Uint32(body[4:])))
			height = clampSide(uint64(binary.BigEndian.Uint32(body[8:])))
			found = true
		case kind == "clap" && len(body) >= 16:
			clap = body
		case kind == "irot" && len(body) >= 1:
			rotated = body[0]&1 == 1 // 90 or 270 degrees
		}
	}
	if !found {
		return 0, 0, errHEIFHeader
	}
	// The clean aperture crops the coded image to what is shown (a 451x461 picture is
	// coded as 452x462): the size libheif decodes, and never larger than the coded one.
	if clap != nil {
		fraction := func(b []byte) int {
			n, d := binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
			if d == 0 || int32(n) <= 0 {
				return 0
			}
			return int((uint64(n) + uint64(d)/2) / uint64(d))
		}
		if w := fraction(clap); w > 0 && w < width {
			width = w
		}
		if h := fraction(clap[8:]); h > 0 && h < height {
			height = h
		}
	}
	if rotated {
		width, height = height, width
	}
	return width, height, nil
}

// heifAssociations lists the (1-based) property indexes ipma associates with item.
func heifAssociations(ipma []byte, item uint32) []int {
	if len(ipma) < 8 {
		return nil
	}
	version, flags := ipma[0], ipma[3]
	entries := binary.BigEndian.Uint32(ipma[4:])
	p := 8
	for range entries {
		var id uint32
		if version < 1 {
			if p+3 > len(ipma) {
				return nil
			}
			id, p = uint32(binary.BigEndian.Uint16(ipma[p:])), p+2
		} else {
			if p+5 > len(ipma) {
				return nil
			}
			id, p = binary.BigEndian.Uint32(ipma[p:]), p+4
		}
		n := int(ipma[p])
		p++
		var indexes []int
		for range n {
			if flags&1 == 1 {
				if p+2 > len(ipma) {
					return nil
				}
				indexes = append(indexes, int(binary.BigEndian.Uint16(ipma[p:])&0x7fff))
				p += 2
			} else {
				if p+1 > len(ipma) {
					return nil
				}
				indexes = append(indexes, int(ipma[p]&0x7f))
				p++
			}
		}
		if id == item {
			return indexes
		}
	}
	return nil
}
