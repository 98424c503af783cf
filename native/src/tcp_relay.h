// A userland TCP relay for published ports the kernel's NAT cannot serve (IPv6 loopback, IPv6 in
// front of an IPv4-only container): a listening socket whose connections are carried to a target
// address by splice(2) through a pipe per direction, so the bytes never enter user space, as
// docker-proxy's io.Copy does. One thread with one epoll set serves every relay of the process;
// JavaScript only opens and closes relays. Why not Node streams: they copied each chunk through
// the JS thread and reached 5.4 Gbit/s through [::1] where docker-proxy reached 12.6.
#pragma once
#include <napi.h>
#include <sys/socket.h>

namespace tsnet {

struct RelayListener;

class TcpRelay : public Napi::ObjectWrap<TcpRelay> {
 public:
  static Napi::Function Define(Napi::Env env);
  // new TcpRelay(listenIp: string, port: number, targetIp: string, targetPort: number)
  // Throws an error with errno/syscall when the port cannot be had (EADDRINUSE, EACCES, …).
  explicit TcpRelay(const Napi::CallbackInfo& info);
  ~TcpRelay() override;

 private:
  // Stops listening and cuts every connection it carries; returns once the relay thread has.
  Napi::Value Close(const Napi::CallbackInfo& info);
  // { active, accepted }: connections carried now, and since the relay opened.
  Napi::Value Stats(const Napi::CallbackInfo& info);
  void Shut();

  RelayListener* listener_ = nullptr;
};

}  // namespace tsnet
