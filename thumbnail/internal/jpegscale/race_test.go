//go:build race

package jpegscale

// raceEnabled is true under the race detector, which makes decoding some 30
// times slower.
const raceEnabled = true
