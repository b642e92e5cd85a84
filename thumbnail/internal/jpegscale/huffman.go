// Copyright 2009 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

// This file is derived from Go's src/image/jpeg/huffman.go (go1.26.8); see
// NOTICE. Changes: a 10-bit look-up table, a second table that decodes a
// whole AC coefficient (run, size and value bits) or an end of block in one
// look-up, canonical
// maxCode/valOffset arrays for longer codes, and a refusal of over-subscribed
// tables, which no encoder writes and which image/jpeg and this package would
// read differently.

package jpegscale

// maxCodeLength is the maximum (inclusive) number of bits in a Huffman code.
const maxCodeLength = 16

// maxNCodes is the maximum (inclusive) number of codes in a Huffman tree.
const maxNCodes = 256

// lutBits is the log-2 size of the Huffman decoder's look-up tables.
const lutBits = 10

// huffman is a Huffman decoder, specified in section C.
type huffman struct {
	// nCodes is the number of codes in the tree; 0 means undefined.
	nCodes int32
	// lut is the look-up table for the next lutBits bits in the bit-stream.
	// The high 8 bits of the uint16 are the encoded value. The low 8 bits
	// are the code length, or 0 if the code is longer than lutBits.
	lut [1 << lutBits]uint16
	// fastAC, for AC tables, decodes the next lutBits bits of the bit-stream
	// when they hold a whole AC coefficient: a code for (run, size) with size
	// > 0 followed by its size extra bits. Its entries are
	//	value<<16 | run<<8 | codeLength<<4 | codeLength+size
	// with value the coefficient (sign-extended, never 0). The end-of-block
	// code (0x00) has the entry codeLength<<4 | codeLength, with value 0.
	// Other bits have the entry 0.
	fastAC [1 << lutBits]int32
	// vals are the decoded values, sorted by their encoding.
	vals [maxNCodes]uint8
	// maxCode[i] is the largest code of length i, or -1 if there are no codes
	// of that length; valOffset[i] + code is the index in vals of code.
	maxCode   [maxCodeLength + 1]int32
	valOffset [maxCodeLength + 1]int32
}

// processDHT processes a Define Huffman Table marker, and initializes a huffman
// struct from its contents. Specified in section B.2.4.2.
func (d *decoder) processDHT(n int) error {
	for n > 0 {
		if n < 17 {
			return formatError("DHT has wrong length")
		}
		tmp, err := d.readFull(17)
		if err != nil {
			return err
		}
		tc := tmp[0] >> 4
		if tc > maxTc {
			return formatError("bad Tc value")
		}
		th := tmp[0] & 0x0f
		// The baseline th <= 1 restriction is specified in table B.5.
		if th > maxTh || (d.baseline && th > 1) {
			return formatError("bad Th value")
		}
		h := &d.huff[tc][th]

		// Read nCodes and h.vals (and derive h.nCodes).
		// nCodes[i] is the number of codes with code length i+1.
		// h.nCodes is the total number of codes.
		h.nCodes = 0
		var nCodes [maxCodeLength]int32
		for i := range nCodes {
			nCodes[i] = int32(tmp[i+1])
			h.nCodes += nCodes[i]
		}
		if h.nCodes == 0 {
			return formatError("Huffman table has zero length")
		}
		if h.nCodes > maxNCodes {
			h.nCodes = 0
			return formatError("Huffman table has excessive length")
		}
		n -= int(h.nCodes) + 17
		if n < 0 {
			h.nCodes = 0
			return formatError("DHT has wrong length")
		}
		vals, err := d.readFull(int(h.nCodes))
		if err != nil {
			h.nCodes = 0
			return err
		}
		copy(h.vals[:], vals)

		// Derive maxCode and valOffset (the codes are assigned in order of
		// length, as in section C), checking that the code lengths do not
		// over-subscribe the code space.
		var code, index int32
		for i, nc := range nCodes {
			length := i + 1
			if nc == 0 {
				h.maxCode[length] = -1
				h.valOffset[length] = 0
			} else {
				h.valOffset[length] = index - code
				code += nc
				index += nc
				h.maxCode[length] = code - 1
				if code > 1<<length {
					// Over-subscribed: more codes of this length than fit.
					h.nCodes = 0
					return unsupportedError("over-subscribed Huffman table")
				}
			}
			code <<= 1
		}

		// Derive the look-up tables.
		clear(h.lut[:])
		clear(h.fastAC[:])
		code, index = 0, 0
		for i := 0; i < lutBits; i++ {
			length := uint(i + 1)
			for j := int32(0); j < nCodes[i]; j++ {
				v := h.vals[index]
				fill := uint32(1) << (lutBits - length)
				base := uint32(code) << (lutBits - length)
				for k := uint32(0); k < fill; k++ {
					h.lut[base|k] = uint16(v)<<8 | uint16(length)
				}
				if tc == acTable {
					// The extra bits of a coefficient of the given size
					// follow the code; if they fit too, the look-up gives
					// the coefficient.
					run, size := uint32(v>>4), uint(v&0x0f)
					if v == 0x00 {
						for k := uint32(0); k < fill; k++ {
							h.fastAC[base|k] = int32(length<<4 | length)
						}
					}
					if size != 0 && length+size <= lutBits {
						for k := uint32(0); k < fill; k++ {
							extra := int32(k >> (lutBits - length - size))
							if extra < 1<<(size-1) {
								extra += -1<<size + 1
							}
							h.fastAC[base|k] = extra<<16 | int32(run<<8) | int32(length<<4) | int32(length+size)
						}
					}
				}
				code++
				index++
			}
			code <<= 1
		}
	}
	return nil
}

// decodeSlow decodes a Huffman code longer than lutBits from the top bits of
// acc, which must hold at least maxCodeLength valid bits. It returns the
// decoded value and the code length.
func (h *huffman) decodeSlow(acc uint64) (uint8, uint, error) {
	if h.nCodes == 0 {
		return 0, 0, formatError("uninitialized Huffman table")
	}
	for length := uint(lutBits + 1); length <= maxCodeLength; length++ {
		code := int32(acc >> (64 - length))
		if code <= h.maxCode[length] {
			return h.vals[uint8(h.valOffset[length]+code)], length, nil
		}
	}
	return 0, 0, formatError("bad Huffman code")
}
