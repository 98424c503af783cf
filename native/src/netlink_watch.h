// A NETLINK_ROUTE socket subscribed to multicast groups (link events and the like) in one
// namespace, read by a dedicated thread that hands each datagram to JavaScript through a
// thread-safe function. A dedicated thread, not a pool thread: a watch blocks for as long as it
// lives, and pinning one of libuv's four pool threads would starve every other async call.
#pragma once
#include <napi.h>

#include <atomic>
#include <thread>

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
  void Stop();
  void Loop();

  int fd_ = -1;
  int stopFd_ = -1;
  std::thread reader_;
  Napi::ThreadSafeFunction tsfn_;
  std::atomic<bool> stopped_{false};
};

}  // namespace tsnet
