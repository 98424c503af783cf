// A NETLINK_ROUTE socket subscribed to multicast groups (link events and the like) in one
// namespace, read by its own thread (socket_reader.h) that hands each datagram to JavaScript.
#pragma once
#include <napi.h>

#include "socket_reader.h"

namespace tsnet {

class NetlinkWatch : public Napi::ObjectWrap<NetlinkWatch> {
 public:
  static Napi::Function Define(Napi::Env env);
  // new NetlinkWatch(nsPath: string | null, groups: number, onData: (buf: Buffer | null) => void)
  // onData(null) means the kernel dropped events (receive buffer overrun): the caller resyncs.
  explicit NetlinkWatch(const Napi::CallbackInfo& info);
  ~NetlinkWatch() override;

 private:
  Napi::Value Close(const Napi::CallbackInfo& info);
  void Loop();

  SocketReader reader_;
};

}  // namespace tsnet
