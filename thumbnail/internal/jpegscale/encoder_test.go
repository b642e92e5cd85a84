package jpegscale

// A small JPEG encoder for the tests, written from ITU-T T.81: image/jpeg only
// writes baseline 4:2:0 (or grey) files, and the tests need every sampling
// factor image/jpeg decodes, progressive files with spectral selection and
// successive approximation, restart intervals, CMYK and YCCK. It favours
// clarity over speed: a floating-point FDCT, and Huffman tables optimised for
// each scan (section K.2), which gives the decoder realistic code lengths, from
// one bit to sixteen.

import (
	"bytes"
	"image"
	"math"
	"math/rand/v2"
)

// encSpec describes a JPEG for encode.
type encSpec struct {
	w, h      int
	sampling  []uint8    // h<<4|v per component; its length is the number of components
	ids       []uint8    // component identifiers (default 1, 2, 3, 4)
	progress  bool       // SOF2, with script (or defaultScript)
	extended  bool       // SOF1 instead of SOF0
	script    []scanSpec // scans; nil for one interleaved scan (sequential) or defaultScript
	ri        int        // restart interval, in MCUs
	adobe     int        // Adobe APP14 transform + 1; 0 for no APP14 marker
	jfif      bool       // an APP0 JFIF marker
	quality   int        // 1..100, as libjpeg's scaling of the table K.1 tables
	longCodes bool       // use 12-bit codes for every symbol (the slow Huffman path)
}

// scanSpec is a scan: components (indexes), spectral selection and successive
// approximation.
type scanSpec struct {
	comps          []int
	ss, se, ah, al int
}

// defaultScript is libjpeg's jpeg_simple_progression for three components
// (for one component, the scans of component 0).
func defaultScript(ncomp int) []scanSpec {
	if ncomp != 3 {
		var s []scanSpec
		all := make([]int, ncomp)
		for i := range all {
			all[i] = i
		}
		s = append(s, scanSpec{all, 0, 0, 0, 1})
		for c := 0; c < ncomp; c++ {
			s = append(s, scanSpec{[]int{c}, 1, 5, 0, 2}, scanSpec{[]int{c}, 6, 63, 0, 2},
				scanSpec{[]int{c}, 1, 63, 2, 1})
		}
		s = append(s, scanSpec{all, 0, 0, 1, 0})
		for c := 0; c < ncomp; c++ {
			s = append(s, scanSpec{[]int{c}, 1, 63, 1, 0})
		}
		return s
	}
	return []scanSpec{
		{[]int{0, 1, 2}, 0, 0, 0, 1},
		{[]int{0}, 1, 5, 0, 2},
		{[]int{2}, 1, 63, 0, 1},
		{[]int{1}, 1, 63, 0, 1},
		{[]int{0}, 6, 63, 0, 2},
		{[]int{0}, 1, 63, 2, 1},
		{[]int{0, 1, 2}, 0, 0, 1, 0},
		{[]int{2}, 1, 63, 1, 0},
		{[]int{1}, 1, 63, 1, 0},
		{[]int{0}, 1, 63, 1, 0},
	}
}

// testPlanes returns ncomp full-size sample planes of a w x h test picture,
// made to look like a photo's YCbCr planes: plane 0 (and 3, black) has smooth
// gradients, a few hard edges and some noise, so that its blocks have both
// low and high frequencies; planes 1 and 2 (chroma) are smoother and closer
// to 128.
func testPlanes(w, h, ncomp int, seed uint64) [][]uint8 {
	r := rand.New(rand.NewPCG(seed, 7))
	planes := make([][]uint8, ncomp)
	for c := range planes {
		p := make([]uint8, w*h)
		detail := c == 0 || c == 3
		fx, fy := 3+float64(c), 2+float64(2*c)
		amp, edge, noise := 100.0, 40.0, 8
		if !detail {
			fx, fy = 1+float64(c)/2, 1
			amp, edge, noise = 40, 10, 2
		}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				u, v := float64(x)/float64(max(w, 1)), float64(y)/float64(max(h, 1))
				s := 128 + amp*math.Sin(fx*u*math.Pi+float64(c))*math.Cos(fy*v*math.Pi)
				if (x/13+y/11+c)%5 == 0 {
					s += edge // hard edges
				}
				s += float64(r.IntN(2*noise+1) - noise)
				p[y*w+x] = uint8(max(0, min(255, s)))
			}
		}
		planes[c] = p
	}
	return planes
}

// quantTable returns table K.1 (luma) or K.2 (chroma) scaled for quality, in
// zig-zag order.
func quantTable(chroma bool, quality int) [64]int32 {
	luma := [64]int32{
		16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40,
		26, 24, 22, 22, 24, 49, 35, 37, 29, 40, 58, 51, 61, 60, 57, 51,
		56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80, 109, 81, 87,
		95, 98, 103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99,
	}
	chromaT := [64]int32{
		17, 18, 18, 24, 21, 24, 47, 26, 26, 47, 99, 66, 56, 66, 99, 99,
		99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
		99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
		99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
	}
	t := luma
	if chroma {
		t = chromaT
	}
	scale := int32(5000 / quality)
	if quality >= 50 {
		scale = int32(200 - 2*quality)
	}
	for i := range t {
		t[i] = max(1, min(255, (t[i]*scale+50)/100))
	}
	return t
}

// bitWriter writes entropy-coded data with byte stuffing, or only counts
// symbol frequencies.
type bitWriter struct {
	out    *bytes.Buffer
	acc    uint32
	n      uint
	counts [][256]int // per table, when counting
	codes  []huffCode // per table, when writing
}

type huffCode struct {
	code [256]uint32
	size [256]uint8
}

func (w *bitWriter) counting() bool { return w.counts != nil }

func (w *bitWriter) bits(v uint32, n uint) {
	if w.counting() || n == 0 {
		return
	}
	w.acc = w.acc<<n | v&(1<<n-1)
	w.n += n
	for w.n >= 8 {
		b := uint8(w.acc >> (w.n - 8))
		w.out.WriteByte(b)
		if b == 0xff {
			w.out.WriteByte(0)
		}
		w.n -= 8
	}
}

func (w *bitWriter) symbol(table int, s uint8) {
	if w.counting() {
		w.counts[table][s]++
		return
	}
	c := &w.codes[table]
	if c.size[s] == 0 {
		panic("symbol without a code")
	}
	w.bits(c.code[s], uint(c.size[s]))
}

// flush pads the last byte with 1-bits.
func (w *bitWriter) flush() {
	if w.n > 0 {
		w.bits(0x7f, 8-w.n)
	}
}

// bitLen is the number of bits of v > 0, the JPEG "size" category.
func bitLen(v int) uint {
	n := uint(0)
	for v > 0 {
		n++
		v >>= 1
	}
	return n
}

// encComp is a component being encoded.
type encComp struct {
	h, v   int
	bw, bh int       // blocks per row and column in the MCU grid
	coef   [][64]int // quantized coefficients, natural order, per block
	tq     int
	pred   int
}

// encoder state for one file.
type encoder struct {
	spec  encSpec
	comps []*encComp
	mxx   int
	myy   int
	quant [2][64]int32
	out   bytes.Buffer
	// progressive state
	eobRun   int
	be       []uint8 // buffered correction bits of the EOB run
	acTable  int     // the table of the EOB run
	restarts int
	tables   []int // table id per component of the scan
}

// encode encodes the given full-size planes (one per component).
func encode(spec encSpec, planes [][]uint8) []byte {
	if spec.quality == 0 {
		spec.quality = 90
	}
	ncomp := len(spec.sampling)
	if spec.ids == nil {
		spec.ids = []uint8{1, 2, 3, 4}[:ncomp]
	}
	e := &encoder{spec: spec}
	e.quant[0] = quantTable(false, spec.quality)
	e.quant[1] = quantTable(true, spec.quality)
	hmax, vmax := 1, 1
	for _, s := range spec.sampling {
		hmax, vmax = max(hmax, int(s>>4)), max(vmax, int(s&15))
	}
	e.mxx = (spec.w + 8*hmax - 1) / (8 * hmax)
	e.myy = (spec.h + 8*vmax - 1) / (8 * vmax)
	if ncomp == 1 {
		// A single component is always non-interleaved: its MCU is a block,
		// whatever its nominal sampling factors.
		hmax, vmax = 1, 1
		e.mxx, e.myy = (spec.w+7)/8, (spec.h+7)/8
	}
	for c := 0; c < ncomp; c++ {
		hc, vc := int(spec.sampling[c]>>4), int(spec.sampling[c]&15)
		if ncomp == 1 {
			hc, vc = 1, 1
		}
		ec := &encComp{h: hc, v: vc, bw: e.mxx * hc, bh: e.myy * vc}
		if c > 0 && c < 3 && ncomp == 3 || c > 0 && c < 3 && spec.adobe == 3 {
			ec.tq = 1 // chroma tables for Cb, Cr
		}
		if ncomp == 1 {
			ec.tq = 0
		}
		e.fdctComponent(ec, planes[c], hmax, vmax)
		e.comps = append(e.comps, ec)
	}

	o := &e.out
	o.Write([]byte{0xff, 0xd8})
	if spec.jfif {
		o.Write([]byte{0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0})
	}
	if spec.adobe != 0 {
		o.Write([]byte{0xff, 0xee, 0, 14, 'A', 'd', 'o', 'b', 'e', 0, 100, 0, 0, 0, 0, uint8(spec.adobe - 1)})
	}
	for t := 0; t < 2; t++ {
		o.Write([]byte{0xff, 0xdb, 0, 67, uint8(t)})
		for _, q := range e.quant[t] {
			o.WriteByte(uint8(q))
		}
	}
	sof := byte(0xc0)
	if spec.extended {
		sof = 0xc1
	}
	if spec.progress {
		sof = 0xc2
	}
	o.Write([]byte{0xff, sof, 0, uint8(8 + 3*ncomp), 8, uint8(spec.h >> 8), uint8(spec.h), uint8(spec.w >> 8), uint8(spec.w), uint8(ncomp)})
	for c := 0; c < ncomp; c++ {
		o.Write([]byte{spec.ids[c], spec.sampling[c], uint8(e.comps[c].tq)})
	}
	if spec.ri > 0 {
		o.Write([]byte{0xff, 0xdd, 0, 4, uint8(spec.ri >> 8), uint8(spec.ri)})
	}
	script := spec.script
	if script == nil {
		if spec.progress {
			script = defaultScript(ncomp)
		} else {
			all := make([]int, ncomp)
			for i := range all {
				all[i] = i
			}
			script = []scanSpec{{all, 0, 63, 0, 0}}
		}
	}
	for _, sc := range script {
		e.writeScan(sc)
	}
	o.Write([]byte{0xff, 0xd9})
	return o.Bytes()
}

// fdctComponent downsamples a full-size plane to the component's sampling
// factors, pads it to whole MCUs by replicating its edges, and stores its
// quantized coefficients.
func (e *encoder) fdctComponent(ec *encComp, plane []uint8, hmax, vmax int) {
	w, h := e.spec.w, e.spec.h
	cw := (w*ec.h + hmax - 1) / hmax
	ch := (h*ec.v + vmax - 1) / vmax
	sx, sy := hmax/ec.h, vmax/ec.v
	sample := func(x, y int) float64 {
		x, y = min(x, cw-1), min(y, ch-1)
		var sum, n float64
		for j := 0; j < sy; j++ {
			for i := 0; i < sx; i++ {
				px, py := min(x*sx+i, w-1), min(y*sy+j, h-1)
				sum += float64(plane[py*w+px])
				n++
			}
		}
		return sum / n
	}
	q := &e.quant[ec.tq]
	ec.coef = make([][64]int, ec.bw*ec.bh)
	if w == 0 || h == 0 {
		return
	}
	var px [64]float64
	for by := 0; by < ec.bh; by++ {
		for bx := 0; bx < ec.bw; bx++ {
			for y := 0; y < 8; y++ {
				for x := 0; x < 8; x++ {
					px[8*y+x] = sample(8*bx+x, 8*by+y) - 128
				}
			}
			c := &ec.coef[by*ec.bw+bx]
			for v := 0; v < 8; v++ {
				for u := 0; u < 8; u++ {
					var s float64
					for y := 0; y < 8; y++ {
						for x := 0; x < 8; x++ {
							s += px[8*y+x] * dctCos[x][u] * dctCos[y][v]
						}
					}
					cu, cv := 1.0, 1.0
					if u == 0 {
						cu = math.Sqrt2 / 2
					}
					if v == 0 {
						cv = math.Sqrt2 / 2
					}
					s *= cu * cv / 4
					c[8*v+u] = int(math.Round(s / float64(q[zigOf[8*v+u]])))
				}
			}
		}
	}
}

var dctCos = func() (t [8][8]float64) {
	for x := range t {
		for u := range t[x] {
			t[x][u] = math.Cos(float64(2*x+1) * float64(u) * math.Pi / 16)
		}
	}
	return t
}()

// zigOf maps natural order to zig-zag order.
var zigOf = func() (t [64]int) {
	for z, n := range unzig {
		t[n] = z
	}
	return t
}()

// writeScan writes a DHT marker with the scan's optimal tables, the SOS marker
// and the entropy-coded data.
func (e *encoder) writeScan(sc scanSpec) {
	// Tables: one DC and one AC table per component of the scan (for
	// baseline, where only tables 0 and 1 exist, the second is shared).
	n := len(sc.comps)
	w := &bitWriter{counts: make([][256]int, 2*n)}
	e.tables = make([]int, n)
	for i := range e.tables {
		e.tables[i] = i
		if !e.spec.progress && !e.spec.extended {
			e.tables[i] = min(i, 1)
		}
	}
	e.entropy(w, sc)
	w.codes = make([]huffCode, 2*n)
	var dht bytes.Buffer
	for t := 0; t < 2*n; t++ {
		class := t % 2 // 0 DC, 1 AC
		bits, vals := optimalTable(w.counts[t], e.spec.longCodes)
		if bits == nil {
			continue
		}
		dht.WriteByte(uint8(class<<4 | t/2))
		dht.Write(bits[1:17])
		dht.Write(vals)
		code := uint32(0)
		k := 0
		for l := 1; l <= 16; l++ {
			for i := 0; i < int(bits[l]); i++ {
				w.codes[t].code[vals[k]] = code
				w.codes[t].size[vals[k]] = uint8(l)
				code++
				k++
			}
			code <<= 1
		}
	}
	o := &e.out
	if dht.Len() > 0 {
		o.Write([]byte{0xff, 0xc4, uint8((dht.Len() + 2) >> 8), uint8(dht.Len() + 2)})
		o.Write(dht.Bytes())
	}
	o.Write([]byte{0xff, 0xda, 0, uint8(6 + 2*n), uint8(n)})
	for i, c := range sc.comps {
		t := uint8(e.tables[i])
		o.Write([]byte{e.spec.ids[c], t<<4 | t})
	}
	o.Write([]byte{uint8(sc.ss), uint8(sc.se), uint8(sc.ah<<4 | sc.al)})
	w.counts = nil
	w.out = o
	e.entropy(w, sc)
}

// optimalTable returns the BITS and HUFFVAL lists of an optimal table for the
// symbol counts, with codes of at most 16 bits (section K.2), or all 12-bit
// codes if long.
func optimalTable(counts [256]int, long bool) (bits []uint8, vals []uint8) {
	var freq [257]int
	used := 0
	for i, c := range counts {
		freq[i] = c
		if c > 0 {
			used++
		}
	}
	if used == 0 {
		return nil, nil
	}
	bits = make([]uint8, 260)
	if long {
		for s, c := range counts {
			if c > 0 {
				vals = append(vals, uint8(s))
			}
		}
		bits[12] = uint8(len(vals))
		return bits[:17], vals
	}
	freq[256] = 1 // reserves the all-ones code point
	var codesize [257]int
	var others [257]int
	for i := range others {
		others[i] = -1
	}
	for {
		c1, c2 := -1, -1
		for i := range freq {
			if freq[i] > 0 && (c1 < 0 || freq[i] <= freq[c1]) {
				c1 = i
			}
		}
		for i := range freq {
			if freq[i] > 0 && i != c1 && (c2 < 0 || freq[i] <= freq[c2]) {
				c2 = i
			}
		}
		if c2 < 0 {
			break
		}
		freq[c1] += freq[c2]
		freq[c2] = 0
		codesize[c1]++
		for others[c1] >= 0 {
			c1 = others[c1]
			codesize[c1]++
		}
		others[c1] = c2
		codesize[c2]++
		for others[c2] >= 0 {
			c2 = others[c2]
			codesize[c2]++
		}
	}
	for i := range codesize {
		if codesize[i] > 0 {
			bits[codesize[i]]++
		}
	}
	// Limit the code lengths to 16 bits (figure K.3).
	for i := len(bits) - 1; i > 16; i-- {
		for bits[i] > 0 {
			j := i - 2
			for bits[j] == 0 {
				j--
			}
			bits[i] -= 2
			bits[i-1]++
			bits[j+1] += 2
			bits[j]--
		}
	}
	i := 16
	for bits[i] == 0 {
		i--
	}
	bits[i]-- // the reserved code point
	for size := 1; size < len(bits); size++ {
		for s := 0; s < 256; s++ {
			if codesize[s] == size {
				vals = append(vals, uint8(s))
			}
		}
	}
	return bits[:17], vals
}

// entropy encodes (or counts) the scan's blocks, with restart markers.
func (e *encoder) entropy(w *bitWriter, sc scanSpec) {
	e.eobRun, e.be = 0, nil
	for _, c := range sc.comps {
		e.comps[c].pred = 0
	}
	restart := func(last bool) {
		e.flushEOB(w, 1)
		w.flush()
		if !last && !w.counting() {
			w.out.Write([]byte{0xff, 0xd0 + uint8(e.restarts%8)})
		}
		e.restarts++
		for _, c := range sc.comps {
			e.comps[c].pred = 0
		}
	}
	e.restarts = 0
	mcu := 0
	if len(sc.comps) == 1 {
		c := e.comps[sc.comps[0]]
		hmax, vmax := 1, 1
		for _, ec := range e.comps {
			hmax, vmax = max(hmax, ec.h), max(vmax, ec.v)
		}
		bw := ((e.spec.w*c.h+hmax-1)/hmax + 7) / 8
		bh := ((e.spec.h*c.v+vmax-1)/vmax + 7) / 8
		for by := 0; by < bh; by++ {
			for bx := 0; bx < bw; bx++ {
				e.block(w, sc, 0, &c.coef[by*c.bw+bx])
				mcu++
				if e.spec.ri > 0 && mcu%e.spec.ri == 0 && mcu < bw*bh {
					restart(false)
				}
			}
		}
	} else {
		for my := 0; my < e.myy; my++ {
			for mx := 0; mx < e.mxx; mx++ {
				for i, ci := range sc.comps {
					c := e.comps[ci]
					for j := 0; j < c.h*c.v; j++ {
						bx, by := c.h*mx+j%c.h, c.v*my+j/c.h
						e.block(w, sc, i, &c.coef[by*c.bw+bx])
					}
				}
				mcu++
				if e.spec.ri > 0 && mcu%e.spec.ri == 0 && mcu < e.mxx*e.myy {
					restart(false)
				}
			}
		}
	}
	restart(true)
}

// block encodes one block of the i-th component of the scan.
func (e *encoder) block(w *bitWriter, sc scanSpec, i int, coef *[64]int) {
	dcT, acT := 2*e.tables[i], 2*e.tables[i]+1
	c := e.comps[sc.comps[i]]
	z := func(k int) int { return coef[unzig[k]] }
	switch {
	case sc.ss == 0 && sc.ah == 0: // DC first (or sequential)
		dc := z(0) >> sc.al
		diff := dc - c.pred
		c.pred = dc
		emitValue(w, dcT, 0, diff)
		if sc.se > 0 {
			e.acFirst(w, acT, coef, 1, 63, 0)
		}
	case sc.ss == 0: // DC refinement
		w.bits(uint32(z(0)>>sc.al)&1, 1)
	case sc.ah == 0:
		e.acFirst(w, acT, coef, sc.ss, sc.se, sc.al)
	default:
		e.acRefine(w, acT, coef, sc.ss, sc.se, sc.al)
	}
}

// emitValue emits the symbol run<<4|size and the size bits of v.
func emitValue(w *bitWriter, table, run, v int) {
	a := v
	if a < 0 {
		a = -a
	}
	size := bitLen(a)
	w.symbol(table, uint8(run<<4)|uint8(size))
	if v < 0 {
		v--
	}
	w.bits(uint32(v), size)
}

// flushEOB emits the pending EOB run and its correction bits.
func (e *encoder) flushEOB(w *bitWriter, acT int) {
	if e.eobRun > 0 {
		n := bitLen(e.eobRun) - 1
		w.symbol(e.acTable, uint8(n<<4))
		w.bits(uint32(e.eobRun), n)
		e.eobRun = 0
	}
	for _, b := range e.be {
		w.bits(uint32(b), 1)
	}
	e.be = e.be[:0]
}

// acFirst encodes the first scan of coefficients ss..se, point transformed
// by al (section G.1.2.2; sequential scans are the case ss=1, se=63, al=0
// without EOB runs).
func (e *encoder) acFirst(w *bitWriter, acT int, coef *[64]int, ss, se, al int) {
	e.acTable = acT
	r := 0
	for k := ss; k <= se; k++ {
		v := coef[unzig[k]]
		if v < 0 {
			v = -(-v >> al)
		} else {
			v >>= al
		}
		if v == 0 {
			r++
			continue
		}
		e.flushEOB(w, acT)
		for r > 15 {
			w.symbol(acT, 0xf0)
			r -= 16
		}
		emitValue(w, acT, r, v)
		r = 0
	}
	if r > 0 {
		if !e.spec.progress {
			w.symbol(acT, 0x00) // EOB
			return
		}
		e.eobRun++
		if e.eobRun == 0x7fff {
			e.flushEOB(w, acT)
		}
	}
}

// acRefine encodes a successive approximation refinement of coefficients
// ss..se (section G.1.2.3).
func (e *encoder) acRefine(w *bitWriter, acT int, coef *[64]int, ss, se, al int) {
	e.acTable = acT
	var abs [64]int
	eob := 0
	for k := ss; k <= se; k++ {
		v := coef[unzig[k]]
		if v < 0 {
			v = -v
		}
		abs[k] = v >> al
		if abs[k] == 1 {
			eob = k // the last newly non-zero coefficient
		}
	}
	r := 0
	var br []uint8 // correction bits of this block
	for k := ss; k <= se; k++ {
		a := abs[k]
		if a == 0 {
			r++
			continue
		}
		for r > 15 && k <= eob {
			e.flushEOB(w, acT)
			w.symbol(acT, 0xf0)
			r -= 16
			for _, b := range br {
				w.bits(uint32(b), 1)
			}
			br = br[:0]
		}
		if a > 1 {
			br = append(br, uint8(a&1)) // previously non-zero: a correction bit
			continue
		}
		e.flushEOB(w, acT)
		w.symbol(acT, uint8(r<<4|1))
		sign := uint32(1)
		if coef[unzig[k]] < 0 {
			sign = 0
		}
		w.bits(sign, 1)
		for _, b := range br {
			w.bits(uint32(b), 1)
		}
		br = br[:0]
		r = 0
	}
	if r > 0 || len(br) > 0 {
		e.eobRun++
		e.be = append(e.be, br...)
		if e.eobRun == 0x7fff || len(e.be) > 900 {
			e.flushEOB(w, acT)
		}
	}
}

// toImage returns the planes of a test picture as an RGB image, for
// encoding with image/jpeg.
func toImage(planes [][]uint8, w, h int) image.Image {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < w*h; i++ {
		m.Pix[4*i+0] = planes[0][i]
		m.Pix[4*i+1] = planes[1%len(planes)][i]
		m.Pix[4*i+2] = planes[2%len(planes)][i]
		m.Pix[4*i+3] = 255
	}
	return m
}
