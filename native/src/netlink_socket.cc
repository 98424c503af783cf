#include "netlink_socket.h"

#include <errno.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

namespace tsnet {

namespace {
SysError Fail(const char* call) { return SysError{errno, call}; }
}  // namespace

SysError OpenNetlinkSocket(const std::string& nsPath, int protocol, OpenedSocket* out) {
  return RunInNetns(nsPath, [out, protocol]() -> SysError {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    if (fd < 0) return Fail("socket");
    int one = 1;
    // Extended ack carries the kernel's own explanation ("Unknown device type"); capped ack keeps
    // error replies small by not echoing our request back.
    setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
    setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
    int bufsize = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize));
    // A kernel that never answers must not pin a pool thread forever.
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_nl local;
    std::memset(&local, 0, sizeof(local));
    local.nl_family = AF_NETLINK;
    if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
      SysError e = Fail("bind");
      close(fd);
      return e;
    }
    socklen_t len = sizeof(local);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
      SysError e = Fail("getsockname");
      close(fd);
      return e;
    }
    out->fd = fd;
    out->portId = local.nl_pid;
    return SysError{};
  });
}

SysError Transact(int fd, uint32_t portId, uint32_t seq, const uint8_t* request, size_t requestLen,
                  std::vector<uint8_t>* replies, std::vector<uint8_t>* scratch) {
  struct sockaddr_nl kernel;
  std::memset(&kernel, 0, sizeof(kernel));
  kernel.nl_family = AF_NETLINK;
  ssize_t sent;
  do {
    sent = sendto(fd, request, requestLen, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return Fail("sendto");

  // One datagram never exceeds the buffer: the kernel builds dump parts of at most 32 KiB
  // (netlink_recvmsg caps max_recvmsg_len there), and the replies we ask for are small. So each
  // datagram is read in one call, without a MSG_PEEK for its size first (a syscall per reply);
  // MSG_TRUNC still reports a longer one, which becomes an error rather than a torn reply.
  std::vector<uint8_t>& buf = *scratch;
  if (buf.size() < 64 * 1024) buf.resize(64 * 1024);
  for (;;) {
    struct sockaddr_nl from;
    socklen_t fromlen = sizeof(from);
    ssize_t n = recvfrom(fd, buf.data(), buf.size(), MSG_TRUNC, reinterpret_cast<sockaddr*>(&from), &fromlen);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail("recvfrom");
    }
    if (static_cast<size_t>(n) > buf.size()) {
      errno = EMSGSIZE;
      return Fail("netlink reply");
    }
    if (from.nl_pid != 0) continue;  // only the kernel speaks on this socket
    bool done = false;
    size_t off = 0;
    while (off + sizeof(nlmsghdr) <= static_cast<size_t>(n)) {
      auto* h = reinterpret_cast<nlmsghdr*>(buf.data() + off);
      if (h->nlmsg_len < sizeof(nlmsghdr) || off + h->nlmsg_len > static_cast<size_t>(n)) {
        errno = EBADMSG;
        return Fail("netlink reply");
      }
      // Replies to an earlier, abandoned request (or notifications) are skipped.
      if (h->nlmsg_seq == seq && (h->nlmsg_pid == portId || h->nlmsg_pid == 0)) {
        replies->insert(replies->end(), buf.data() + off, buf.data() + off + h->nlmsg_len);
        if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) done = true;
      }
      off += NLMSG_ALIGN(h->nlmsg_len);
    }
    if (done) return SysError{};
  }
}

SysError SocketIn(const std::string& nsPath, int family, int type, int protocol, int* fd) {
  return RunInNetns(nsPath, [=]() -> SysError {
    int s = socket(family, type | SOCK_CLOEXEC, protocol);
    if (s < 0) return Fail("socket");
    *fd = s;
    return SysError{};
  });
}

}  // namespace tsnet
