// JS surface of the native addon. Every export checks its arguments on the JS thread, copies them
// into plain C++ fields, does the work in Execute() (a pool thread, which itself spawns a
// short-lived thread for anything namespace-bound) and settles a Promise. Errors carry errno and the
// failing syscall so TypeScript can raise a typed KernelError. Netlink exchanges are the exception:
// they go through a NetlinkLane (netlink_lane.h), a thread per socket, because they are short and
// come in long sequences. The TypeScript side of this surface is kernel/native.ts; nothing else
// imports the addon.
#include <fcntl.h>
#include <napi.h>
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

// openNetlink(nsPath: string | null): Promise<{ fd, portId }>
Napi::Value OpenNetlink(const Napi::CallbackInfo& info) {
  std::string ns = OptionalString(info[0]);
  auto out = std::make_shared<tsnet::OpenedSocket>();
  auto* w = new PromiseWorker(
      info.Env(), "tsnet:netlink.open", [ns, out]() { return tsnet::OpenNetlinkSocket(ns, out.get()); },
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
  exports.Set("sysctl", Napi::Function::New(env, Sysctl));
  exports.Set("netnsCreate", Napi::Function::New(env, NetnsCreate));
  exports.Set("netnsDelete", Napi::Function::New(env, NetnsDelete));
  exports.Set("socketIn", Napi::Function::New(env, SocketIn));
  exports.Set("NetlinkLane", tsnet::NetlinkLane::Define(env));
  exports.Set("NetlinkWatch", tsnet::NetlinkWatch::Define(env));
  exports.Set("UdpResponder", tsnet::UdpResponder::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(tsnet_native, Init)
