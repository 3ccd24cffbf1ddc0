// Package urlsource reads a file behind an http(s) URL as an io.ReaderAt
// for the upload pipeline: parallel Range requests with a bounded
// read-ahead when the server supports Range, a bounded spool file when it
// does not. Every connection goes through a guard that refuses loopback,
// private and link-local addresses (checked on the address actually
// dialled, so neither DNS rebinding nor a redirect gets around it) unless
// an allow list (UPLOAD_URL_ALLOW) names the host or a network holding
// the address.
package urlsource

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrForbiddenAddress is returned (wrapped) for a connection to an address
// the guard refuses.
var ErrForbiddenAddress = errors.New("address not allowed")

// special are the networks besides loopback, private, link-local,
// multicast and unspecified that reach no public host.
var special = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),     // "this network"
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"),
}

// Guard decides which addresses a fetch may connect to.
type Guard struct {
	hosts map[string]bool
	nets  []netip.Prefix
}

// NewGuard parses an allow list: host names (exact, case-insensitive),
// IP addresses and CIDRs, separated by commas or spaces.
func NewGuard(allow []string) (*Guard, error) {
	g := &Guard{hosts: map[string]bool{}}
	for _, item := range allow {
		for _, a := range strings.FieldsFunc(item, func(r rune) bool { return r == ',' || r == ' ' }) {
			if p, err := netip.ParsePrefix(a); err == nil {
				g.nets = append(g.nets, p.Masked())
				continue
			}
			if ip, err := netip.ParseAddr(a); err == nil {
				g.nets = append(g.nets, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
				continue
			}
			if strings.ContainsAny(a, "/:") {
				return nil, fmt.Errorf("UPLOAD_URL_ALLOW: %q is neither a host, an address nor a CIDR", a)
			}
			g.hosts[strings.ToLower(strings.TrimSuffix(a, "."))] = true
		}
	}
	return g, nil
}

// Internal reports whether ip reaches no public host.
func Internal(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || !ip.IsValid() {
		return true
	}
	for _, p := range special {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// hostAllowed reports whether host is on the allow list by name.
func (g *Guard) hostAllowed(host string) bool {
	return g.hosts[strings.ToLower(strings.TrimSuffix(host, "."))]
}

// Check refuses ip unless it is public or allowed; host is the name the
// URL gave (an allowed name lets every address it resolves to through).
func (g *Guard) Check(host string, ip netip.Addr) error {
	ip = ip.Unmap()
	if !Internal(ip) || g.hostAllowed(host) {
		return nil
	}
	for _, p := range g.nets {
		if p.Contains(ip) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is a loopback, private or link-local address (UPLOAD_URL_ALLOW can allow it)", ErrForbiddenAddress, ip)
}

// DialContext dials addr (host:port) and refuses, at connect time, an
// address the guard does not allow: the check is on the address the
// resolver gave for this very connection.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{
		Timeout:   30 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			h, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			ip, err := netip.ParseAddr(h)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrForbiddenAddress, address)
			}
			return g.Check(host, ip)
		},
	}
	return d.DialContext(ctx, network, addr)
}

// CheckLiteral refuses a URL host that is itself a forbidden IP address,
// before anything is dialled (a quick answer in chat); names are checked
// when dialled.
func (g *Guard) CheckLiteral(host string) error {
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return nil
	}
	return g.Check(host, ip)
}
