// A netlink socket (NETLINK_ROUTE; NETLINK_NETFILTER for conntrack) and one request/response
// exchange on it. The socket is created inside a
// namespace and stays bound to it (vishvananda/netlink's Handle model); no later call needs setns.
// Message encoding and decoding live in TypeScript (kernel/nl/); this layer only moves bytes and
// checks that replies belong to our request.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "netns.h"

namespace tsnet {

struct OpenedSocket {
  int fd = -1;
  uint32_t portId = 0;
};

SysError OpenNetlinkSocket(const std::string& nsPath, int protocol, OpenedSocket* out);

// Sends one request (seq must be set in the buffer) and collects every reply message with that
// sequence number until NLMSG_DONE or NLMSG_ERROR. Returns the raw reply messages concatenated.
// `scratch` is the receive buffer, kept by the caller across calls; it is made 64 KiB on first
// use, more than any netlink datagram, and a longer one is an EMSGSIZE error.
SysError Transact(int fd, uint32_t portId, uint32_t seq, const uint8_t* request, size_t requestLen,
                  std::vector<uint8_t>* replies, std::vector<uint8_t>* scratch);

// Creates a socket of the given family/type/protocol inside a namespace and returns its fd.
SysError SocketIn(const std::string& nsPath, int family, int type, int protocol, int* fd);

}  // namespace tsnet
