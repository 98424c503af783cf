// A socket read by a dedicated thread until stopped, handing what it reads to JavaScript through a
// thread-safe function. A dedicated thread, not a pool thread: a reader blocks for as long as it
// lives, and pinning one of libuv's four pool threads would starve every other async call. Shared
// by the netlink watch and the resolver's UDP responder; each owns one by composition.
#pragma once
#include <napi.h>

#include <atomic>
#include <functional>
#include <thread>

namespace tsnet {

class SocketReader {
 public:
  SocketReader() = default;
  SocketReader(const SocketReader&) = delete;
  SocketReader& operator=(const SocketReader&) = delete;
  ~SocketReader() { Stop(); }

  // Takes the socket (closed by Stop, or here on failure); 0, or the errno of eventfd.
  int Open(int fd);
  // Starts the thread; `loop` runs on it and returns when WaitReadable says stop.
  void Start(Napi::ThreadSafeFunction tsfn, std::function<void()> loop);
  // Blocks until the socket has data (true), or until Stop() or a poll failure (false).
  bool WaitReadable();
  // Idempotent: wakes and joins the thread, closes the socket, releases the function.
  void Stop();

  int fd() const { return fd_; }
  Napi::ThreadSafeFunction& tsfn() { return tsfn_; }

 private:
  int fd_ = -1;
  int stopFd_ = -1;
  std::thread thread_;
  Napi::ThreadSafeFunction tsfn_;
  std::atomic<bool> stopped_{false};
};

}  // namespace tsnet
