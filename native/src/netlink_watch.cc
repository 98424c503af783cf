#include "netlink_watch.h"

#include <errno.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "js_error.h"
#include "netns.h"

namespace tsnet {

namespace {

// What the reader thread hands over: one datagram, or nothing for "events were lost".
struct Chunk {
  std::vector<uint8_t> bytes;
  bool overrun = false;
};

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
  if (err.err != 0) throw ToJsError(env, err);
  if (int e = reader_.Open(fd); e != 0) throw ToJsError(env, SysError{e, "eventfd"});
  auto tsfn = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "tsnet:netlink.watch", 0, 1);
  // A watch never keeps the process alive on its own; the daemon's servers do.
  tsfn.Unref(env);
  reader_.Start(tsfn, [this]() { Loop(); });
}

NetlinkWatch::~NetlinkWatch() { reader_.Stop(); }

void NetlinkWatch::Loop() {
  std::vector<uint8_t> buf(256 * 1024);
  auto deliver = [](Napi::Env env, Napi::Function fn, Chunk* c) {
    if (env != nullptr && fn != nullptr) {
      if (c->overrun) fn.Call({env.Null()});
      else fn.Call({Napi::Buffer<uint8_t>::Copy(env, c->bytes.data(), c->bytes.size())});
    }
    delete c;
  };
  Napi::ThreadSafeFunction& tsfn = reader_.tsfn();
  while (reader_.WaitReadable()) {
    for (;;) {
      ssize_t n = recv(reader_.fd(), buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == ENOBUFS) {
          if (tsfn.BlockingCall(new Chunk{{}, true}, deliver) != napi_ok) return;
          continue;
        }
        break;  // EAGAIN: drained
      }
      auto* c = new Chunk{std::vector<uint8_t>(buf.data(), buf.data() + n), false};
      if (tsfn.BlockingCall(c, deliver) != napi_ok) {
        delete c;
        return;
      }
    }
  }
}

Napi::Value NetlinkWatch::Close(const Napi::CallbackInfo& info) {
  reader_.Stop();
  return info.Env().Undefined();
}

}  // namespace tsnet
