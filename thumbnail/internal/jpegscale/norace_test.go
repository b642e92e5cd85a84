//go:build !race

package jpegscale

const raceEnabled = false
