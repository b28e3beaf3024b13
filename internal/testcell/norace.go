//go:build !race

package testcell

const raceEnabled = false
