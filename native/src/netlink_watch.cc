#include "netlink_watch.h"

#include <errno.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "netns.h"

namespace tsnet {

namespace {

// What the reader thread hands over: one datagram, or nothing for "events were lost".
struct Chunk {
  std::vector<uint8_t> bytes;
  bool overrun = false;
};

Napi::Error SysErr(Napi::Env env, const SysError& e) {
  Napi::Error err = Napi::Error::New(env, e.syscall + ": " + std::strerror(e.err));
  err.Set("errno", Napi::Number::New(env, e.err));
  err.Set("syscall", Napi::String::New(env, e.syscall));
  return err;
}

}  // namespace

Napi::Function NetlinkWatch::Define(Napi::Env env) {
  return DefineClass(env, "NetlinkWatch", {InstanceMethod<&NetlinkWatch::Close>("close")});
}

NetlinkWatch::NetlinkWatch(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NetlinkWatch>(info) {
  Napi::Env env = info.Env();
  std::string ns;
  if (info[0].IsString()) ns = info[0].As<Napi::String>().Utf8Value();
  else if (!info[0].IsNull() && !info[0].IsUndefined()) throw Napi::TypeError::New(env, "nsPath must be a string or null");
  if (!info[1].IsNumber()) throw Napi::TypeError::New(env, "groups must be a number");
  if (!info[2].IsFunction()) throw Napi::TypeError::New(env, "onData must be a function");
  uint32_t groups = info[1].As<Napi::Number>().Uint32Value();

  int fd = -1;
  SysError err = RunInNetns(ns, [&]() -> SysError {
    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
    if (fd < 0) return SysError{errno, "socket"};
    // Bursts (a thousand veths going at once) must not overrun the buffer; root may exceed rmem_max.
    int size = 8 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0)
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    sockaddr_nl local;
    std::memset(&local, 0, sizeof(local));
    local.nl_family = AF_NETLINK;
    local.nl_groups = groups;
    if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
      SysError e{errno, "bind"};
      close(fd);
      fd = -1;
      return e;
    }
    return SysError{};
  });
  if (err.err != 0) throw SysErr(env, err);
  stopFd_ = eventfd(0, EFD_CLOEXEC);
  if (stopFd_ < 0) {
    SysError e{errno, "eventfd"};
    close(fd);
    throw SysErr(env, e);
  }
  fd_ = fd;
  tsfn_ = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "tsnet:netlink.watch", 0, 1);
  // A watch never keeps the process alive on its own; the daemon's servers do.
  tsfn_.Unref(env);
  reader_ = std::thread([this]() { Loop(); });
}

NetlinkWatch::~NetlinkWatch() { Stop(); }

void NetlinkWatch::Loop() {
  std::vector<uint8_t> buf(256 * 1024);
  auto deliver = [](Napi::Env env, Napi::Function fn, Chunk* c) {
    if (env != nullptr && fn != nullptr) {
      if (c->overrun) fn.Call({env.Null()});
      else fn.Call({Napi::Buffer<uint8_t>::Copy(env, c->bytes.data(), c->bytes.size())});
    }
    delete c;
  };
  for (;;) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stopFd_, POLLIN, 0}};
    int r = poll(fds, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    for (;;) {
      ssize_t n = recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == ENOBUFS) {
          if (tsfn_.BlockingCall(new Chunk{{}, true}, deliver) != napi_ok) return;
          continue;
        }
        break;  // EAGAIN: drained
      }
      auto* c = new Chunk{std::vector<uint8_t>(buf.data(), buf.data() + n), false};
      if (tsfn_.BlockingCall(c, deliver) != napi_ok) {
        delete c;
        return;
      }
    }
  }
}

void NetlinkWatch::Stop() {
  if (stopped_.exchange(true)) return;
  uint64_t one = 1;
  if (stopFd_ >= 0 && write(stopFd_, &one, sizeof(one)) < 0) { /* the reader also stops on tsfn release */ }
  if (reader_.joinable()) reader_.join();
  if (fd_ >= 0) close(fd_);
  if (stopFd_ >= 0) close(stopFd_);
  fd_ = stopFd_ = -1;
  if (tsfn_) tsfn_.Release();
}

Napi::Value NetlinkWatch::Close(const Napi::CallbackInfo& info) {
  Stop();
  return info.Env().Undefined();
}

}  // namespace tsnet
