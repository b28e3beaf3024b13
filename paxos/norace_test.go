//go:build !race

package paxos_test

const raceEnabled = false
