// JS surface of the native addon. Every export checks its arguments on the JS thread, copies them
// into plain C++ fields, does the work in Execute() (a pool thread, which itself spawns a
// short-lived thread for anything namespace-bound) and settles a Promise. Errors carry errno and the
// failing syscall so TypeScript can raise a typed KernelError. Netlink exchanges are the exception:
// they go through a NetlinkLane (netlink_lane.h), a thread per socket, because they are short and
// come in long sequences. The TypeScript side of this surface is kernel/native.ts; nothing else
// imports the addon.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <napi.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "js_error.h"
#include "netlink_lane.h"
#include "netlink_socket.h"
#include "netlink_watch.h"
#include "port_relay.h"
#include "udp_responder.h"
#include "netns.h"

namespace {

using tsnet::SysError;

// A promise-settling worker around one function that runs off the JS thread.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<SysError()>;
  using Result = std::function<Napi::Value(Napi::Env)>;

  PromiseWorker(Napi::Env env, const char* name, Work work, Result result)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), result_(std::move(result)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    error_ = work_();
    if (error_.err != 0) SetError(error_.syscall);
  }
  void OnOK() override { deferred_.Resolve(result_(Env())); }
  void OnError(const Napi::Error&) override { deferred_.Reject(tsnet::ToJsError(Env(), error_).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Result result_;
  SysError error_;
};

std::string OptionalString(const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return "";
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), "expected a string or null");
  return v.As<Napi::String>().Utf8Value();
}

uint32_t RequireUint(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  return v.As<Napi::Number>().Uint32Value();
}

// openNetlink(nsPath: string | null, protocol?: number): Promise<{ fd, portId }>
// protocol: NETLINK_ROUTE (0, the default) or NETLINK_NETFILTER (12); nothing else is needed.
Napi::Value OpenNetlink(const Napi::CallbackInfo& info) {
  std::string ns = OptionalString(info[0]);
  int protocol = info.Length() > 1 && !info[1].IsUndefined() ? static_cast<int>(RequireUint(info[1], "protocol")) : NETLINK_ROUTE;
  if (protocol != NETLINK_ROUTE && protocol != NETLINK_NETFILTER) {
    throw Napi::TypeError::New(info.Env(), "protocol must be NETLINK_ROUTE (0) or NETLINK_NETFILTER (12)");
  }
  auto out = std::make_shared<tsnet::OpenedSocket>();
  auto* w = new PromiseWorker(
      info.Env(), "tsnet:netlink.open", [ns, protocol, out]() { return tsnet::OpenNetlinkSocket(ns, protocol, out.get()); },
      [out](Napi::Env env) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("fd", out->fd);
        o.Set("portId", out->portId);
        return o;
      });
  w->Queue();
  return w->Promise();
}

// closeFd(fd): void
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  close(static_cast<int>(RequireUint(info[0], "fd")));
  return info.Env().Undefined();
}

// reserveTcpPort(ip: string, port: number): number (fd). Synchronous: socket and bind never block.
// Holds a published TCP port: bound, never listening, no SO_REUSEADDR. So another socket cannot
// take the port (a bind gets EADDRINUSE even with SO_REUSEADDR of its own), while a connection
// that no NAT rule redirects (IPv6 loopback: the kernel does not NAT ::1 off the host) is refused
// at once rather than left in a listen backlog nobody accepts from, and a port scan sees it closed.
Napi::Value ReserveTcpPort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "reserveTcpPort(ip, port)");
  std::string ip = info[0].As<Napi::String>().Utf8Value();
  uint32_t port = RequireUint(info[1], "port");
  if (port == 0 || port > 65535) throw Napi::TypeError::New(env, "port must be 1..65535");
  sockaddr_storage addr{};
  socklen_t len;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(*v6);
  } else {
    throw Napi::TypeError::New(env, "not an IP address: " + ip);
  }
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw tsnet::ToJsError(env, SysError{errno, "socket"});
  int one = 1;
  // "::" holds the IPv6 port only; 0.0.0.0 is held by a socket of its own, as Docker does.
  if (addr.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) {
    SysError e{errno, "setsockopt"};
    close(fd);
    throw tsnet::ToJsError(env, e);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    SysError e{errno, "bind"};
    close(fd);
    throw tsnet::ToJsError(env, e);
  }
  return Napi::Number::New(env, fd);
}

// sysctl(nsPath: string | null, procPath: string, value: string | null): Promise<string>
// Reads (value null) or writes a /proc/sys file as seen from inside the namespace.
Napi::Value Sysctl(const Napi::CallbackInfo& info) {
  std::string ns = OptionalString(info[0]);
  std::string path = OptionalString(info[1]);
  bool write = !(info[2].IsUndefined() || info[2].IsNull());
  std::string value = write ? OptionalString(info[2]) : "";
  if (!tsnet::IsProcSysPath(path)) throw Napi::TypeError::New(info.Env(), "sysctl path must be under /proc/sys/");
  auto out = std::make_shared<std::string>();
  auto* w = new PromiseWorker(
      info.Env(), "tsnet:sysctl",
      [=]() {
        return tsnet::RunInNetns(ns, [&]() { return write ? tsnet::ProcSysWrite(path, value) : tsnet::ProcSysRead(path, out.get()); });
      },
      [out](Napi::Env env) { return Napi::String::New(env, *out); });
  w->Queue();
  return w->Promise();
}

// netnsCreate(path) / netnsDelete(path): Promise<void>
Napi::Value NetnsCreate(const Napi::CallbackInfo& info) {
  std::string path = OptionalString(info[0]);
  auto* w = new PromiseWorker(info.Env(), "tsnet:netns.create", [path]() { return tsnet::CreateNetns(path); },
                              [](Napi::Env env) { return env.Undefined(); });
  w->Queue();
  return w->Promise();
}

Napi::Value NetnsDelete(const Napi::CallbackInfo& info) {
  std::string path = OptionalString(info[0]);
  auto* w = new PromiseWorker(info.Env(), "tsnet:netns.delete", [path]() { return tsnet::DeleteNetns(path); },
                              [](Napi::Env env) { return env.Undefined(); });
  w->Queue();
  return w->Promise();
}

// socketIn(nsPath, family, type, protocol): Promise<number>  (an fd owned by the caller)
Napi::Value SocketIn(const Napi::CallbackInfo& info) {
  std::string ns = OptionalString(info[0]);
  int family = static_cast<int>(RequireUint(info[1], "family"));
  int type = static_cast<int>(RequireUint(info[2], "type"));
  int protocol = static_cast<int>(RequireUint(info[3], "protocol"));
  auto fd = std::make_shared<int>(-1);
  auto* w = new PromiseWorker(
      info.Env(), "tsnet:socket", [=]() { return tsnet::SocketIn(ns, family, type, protocol, fd.get()); },
      [fd](Napi::Env env) { return Napi::Number::New(env, *fd); });
  w->Queue();
  return w->Promise();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("openNetlink", Napi::Function::New(env, OpenNetlink));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("reserveTcpPort", Napi::Function::New(env, ReserveTcpPort));
  exports.Set("sysctl", Napi::Function::New(env, Sysctl));
  exports.Set("netnsCreate", Napi::Function::New(env, NetnsCreate));
  exports.Set("netnsDelete", Napi::Function::New(env, NetnsDelete));
  exports.Set("socketIn", Napi::Function::New(env, SocketIn));
  exports.Set("NetlinkLane", tsnet::NetlinkLane::Define(env));
  exports.Set("NetlinkWatch", tsnet::NetlinkWatch::Define(env));
  exports.Set("UdpResponder", tsnet::UdpResponder::Define(env));
  exports.Set("PortRelay", tsnet::PortRelay::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(tsnet_native, Init)
