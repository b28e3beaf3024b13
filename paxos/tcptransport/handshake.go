package tcptransport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/lockd/lockd/paxos"
)

// The handshake, framed like every other frame (4-byte big-endian length,
// then the payload):
//
//	hello (dialler → acceptor): "LKDP", version byte, from uint32 BE,
//	                            cell length byte, cell bytes
//	ack   (acceptor → dialler): "LKDP", version byte, status byte (0 = ok)
//
// The acceptor sends nothing after the ack. It refuses a hello by closing the
// connection without an ack.
const (
	helloMagic      = "LKDP"
	protocolVersion = 1
	maxCellLen      = 255
	helloFixedSize  = len(helloMagic) + 1 + 4 + 1
	maxHelloSize    = helloFixedSize + maxCellLen
	ackPayloadSize  = len(helloMagic) + 1 + 1
	ackOK           = 0
)

// errHandshake is wrapped by every handshake failure.
var errHandshake = errors.New("handshake failed")

// hello is what a dialler says about itself.
type hello struct {
	from paxos.NodeID
	cell string
}

// appendHello appends the hello frame of node from in cell.
func appendHello(dst []byte, cell string, from paxos.NodeID) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(helloFixedSize+len(cell)))
	dst = append(dst, helloMagic...)
	dst = append(dst, protocolVersion)
	dst = binary.BigEndian.AppendUint32(dst, uint32(from))
	dst = append(dst, byte(len(cell)))
	return append(dst, cell...)
}

// readHello reads and parses one hello frame, reading at most maxHelloSize+4
// bytes whatever the peer sends.
func readHello(r io.Reader) (hello, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return hello{}, fmt.Errorf("%w: read hello: %w", errHandshake, err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < uint32(helloFixedSize) || n > uint32(maxHelloSize) {
		return hello{}, fmt.Errorf("%w: hello of %d bytes", errHandshake, n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return hello{}, fmt.Errorf("%w: read hello: %w", errHandshake, err)
	}
	if string(buf[:len(helloMagic)]) != helloMagic {
		return hello{}, fmt.Errorf("%w: not a lockd peer", errHandshake)
	}
	buf = buf[len(helloMagic):]
	if buf[0] != protocolVersion {
		return hello{}, fmt.Errorf("%w: protocol version %d, want %d", errHandshake, buf[0], protocolVersion)
	}
	from := paxos.NodeID(binary.BigEndian.Uint32(buf[1:5]))
	cell := buf[6:]
	if int(buf[5]) != len(cell) {
		return hello{}, fmt.Errorf("%w: cell length %d in a %d-byte hello", errHandshake, buf[5], n)
	}
	return hello{from: from, cell: string(cell)}, nil
}

// appendAck appends the ack frame.
func appendAck(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(ackPayloadSize))
	dst = append(dst, helloMagic...)
	return append(dst, protocolVersion, ackOK)
}

// readAck reads the acceptor's ack. An acceptor that refused us closed the
// connection, which shows here as io.EOF.
func readAck(r io.Reader) error {
	var b [4 + ackPayloadSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fmt.Errorf("%w: no ack (refused by peer?): %w", errHandshake, err)
	}
	want := appendAck(nil)
	if string(b[:]) != string(want) {
		return fmt.Errorf("%w: bad ack %x", errHandshake, b[:])
	}
	return nil
}
