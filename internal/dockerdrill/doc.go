// Package dockerdrill is a failure drill of a real five-container lockd cell
// (its tests only; nothing here is imported). TestDockerDrill builds the
// lockd image (Dockerfile at the module root, FROM scratch, so no registry
// is needed), starts a cell with configs/cell-docker.sh on its own private
// bridge network, runs a register workload and a lock workload from the host
// against the published client ports, and meanwhile cuts the leader off the
// network, kills the next leader, restarts it on its volume, replaces a
// third replica with an empty volume (same id, no bootstrap, so it must come
// back recovering and rejoin) and reconnects the first. It then checks that
// the cell recovered (one agreed leader, five replicas up, none recovering,
// no lag), that the register history is linearizable (porcupine), that no
// two sessions ever held a lock at once (generation order and sequencer
// fencing), that no acknowledged write was lost, and that every replica
// converged to the same state.
//
// Without a Docker engine the test skips with a loud message; with
// LOCKD_REQUIRE_DOCKER=1 it fails instead. scripts/docker-drill.sh runs it
// alone, verbosely.
package dockerdrill
