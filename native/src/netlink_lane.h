// NetlinkLane: one thread that carries every exchange of one netlink socket (one NetlinkHandle).
//
// Why not libuv's pool, as every other async call here: a netlink exchange is short (tens to
// hundreds of microseconds of kernel work) and a handle's exchanges come one after another, so the
// hand-offs between the JS thread and the thread doing the syscalls are most of the cost. Measured
// on a 2-vCPU VM whose idle vCPUs halt at once: a no-op GETLINK took 96-122 µs through the pool,
// nearly all of it waking a halted vCPU twice.
//
// The lane cuts that three ways:
// - No per-call async resource: a call is a promise, a queue entry and one condition-variable
//   signal; the answer comes back through one thread-safe function.
// - A receive buffer owned by the lane, not allocated and zeroed per call.
// - While it is the only lane at work, its thread is kept on the CPU the JS thread last ran on.
//   The JS thread is about to wait for the answer anyway, so the two take turns on one CPU and
//   neither hand-off has to wake a halted one. When lanes overlap (parallel CNI ADDs) the lane is
//   let loose on every CPU again, so parallel kernel work still spreads.
//
// A request the kernel answers at once (no RCU grace period to wait for: a create, an address, a
// route, a link going up) may skip the lane altogether: transactNow runs it on the JS thread, with
// no hand-off at all, when no lane in the process is at work. The kernel does rtnetlink work inside
// sendmsg, so the reply is there when sendto returns; whoever sends pays the kernel's time anyway,
// and for such a request the two hand-offs cost more than that. With any lane busy (one of ours may
// hold the RTNL lock through a group delete) the request queues, which also keeps each lane's order.
//
// The lane also writes sysctls of its socket's namespace (/proc/sys/net is per thread: the thread
// enters that namespace when it starts, and does nothing else for its life). A sysctl queued
// between two exchanges runs between them, so a caller can order "disable IPv6 on this link" before
// "set it up" without waiting in between.
//
// The lane owns the socket from construction and closes it in Close().
#pragma once
#include <napi.h>

#include <sched.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "netns.h"

namespace tsnet {

class NetlinkLane : public Napi::ObjectWrap<NetlinkLane> {
 public:
  static Napi::Function Define(Napi::Env env);
  // new NetlinkLane(fd, portId, nsPath | null): nsPath is the namespace the socket was opened in.
  explicit NetlinkLane(const Napi::CallbackInfo& info);
  ~NetlinkLane() override;

 private:
  struct Job {
    uint32_t seq;
    std::vector<uint8_t> request;  // a netlink request, or empty for a sysctl write
    std::string sysctlPath;
    std::string sysctlValue;
    std::vector<uint8_t> replies;
    SysError error;
    Napi::Promise::Deferred deferred;
    NetlinkLane* lane;
  };

  // transact(seq, request: Buffer): Promise<Buffer> — the reply messages with that seq.
  Napi::Value Transact(const Napi::CallbackInfo& info);
  // transactNow(seq, request: Buffer): Buffer | undefined — the same exchange on the calling (JS)
  // thread, taken only while no lane in the process has anything outstanding; undefined otherwise
  // (then use transact). Throws the exchange's system error.
  Napi::Value TransactNow(const Napi::CallbackInfo& info);
  // sysctl(procPath, value): Promise<Buffer> (empty) — a write in the lane's namespace, in queue order.
  Napi::Value Sysctl(const Napi::CallbackInfo& info);
  // close(): finishes queued exchanges, joins the thread, closes the socket. Idempotent.
  Napi::Value Close(const Napi::CallbackInfo& info);

  // The (seq, request) arguments of transact/transactNow, checked; throws a TypeError.
  Napi::Buffer<uint8_t> RequestArg(const Napi::CallbackInfo& info);
  Napi::Value Enqueue(Napi::Env env, Job* job);
  void Loop();
  void Stop();
  void Settle(Napi::Env env, Job* job);
  void PlaceThread();

  int fd_;
  uint32_t portId_;
  std::string nsPath_;
  SysError nsError_;  // set by the thread if it could not enter nsPath_; sysctls then fail with it
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job*> queue_;
  bool stopping_ = false;
  bool stopped_ = false;
  Napi::ThreadSafeFunction done_;
  std::vector<uint8_t> scratch_;
  // JS-thread state: exchanges handed out and not yet settled, and where the thread may run.
  uint32_t outstanding_ = 0;
  int pinnedCpu_ = -1;  // -1: free on every CPU the process may use
  cpu_set_t allowed_;
};

}  // namespace tsnet
