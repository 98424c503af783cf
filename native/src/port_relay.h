// A userland relay for published ports the kernel's NAT cannot serve (IPv6 loopback, IPv6 in front
// of an IPv4-only container), as docker-proxy. TCP: a listening socket whose connections are
// carried to the target by splice(2) through a pipe per direction, so the bytes never enter user
// space. UDP: a bound socket; each client gets its own socket connected to the target, replies go
// back from the bound one, and a client silent for 90 s is forgotten. One thread with one epoll
// set serves every relay of the process; JavaScript only opens and closes relays. Why not Node
// streams: they copied each chunk through the JS thread and reached 5.4 Gbit/s through [::1]
// where docker-proxy reached 12.6.
#pragma once
#include <napi.h>
#include <sys/socket.h>

namespace tsnet {

struct RelayListener;

class PortRelay : public Napi::ObjectWrap<PortRelay> {
 public:
  static Napi::Function Define(Napi::Env env);
  // new PortRelay(listenIp: string, port: number, targetIp: string, targetPort: number, proto: 'tcp' | 'udp')
  // Throws an error with errno/syscall when the port cannot be had (EADDRINUSE, EACCES, …).
  explicit PortRelay(const Napi::CallbackInfo& info);
  ~PortRelay() override;

 private:
  // Stops listening and cuts every connection it carries; returns once the relay thread has.
  Napi::Value Close(const Napi::CallbackInfo& info);
  // { active, accepted }: connections (UDP: client flows) carried now, and since the relay opened.
  Napi::Value Stats(const Napi::CallbackInfo& info);
  void Shut();

  RelayListener* listener_ = nullptr;
};

}  // namespace tsnet
