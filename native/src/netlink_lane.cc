#include "netlink_lane.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>

#include "js_error.h"
#include "netlink_socket.h"

namespace tsnet {

namespace {
// Lanes with an exchange handed out, across the process. Changed and read on JS threads only;
// atomic because worker threads would each have one.
std::atomic<int> busyLanes{0};
// TransactNow's receive buffer: one per JS thread, used one exchange at a time.
thread_local std::vector<uint8_t> inlineScratch;
}  // namespace

Napi::Function NetlinkLane::Define(Napi::Env env) {
  return DefineClass(env, "NetlinkLane",
                     {InstanceMethod<&NetlinkLane::Transact>("transact"), InstanceMethod<&NetlinkLane::TransactNow>("transactNow"),
                      InstanceMethod<&NetlinkLane::Sysctl>("sysctl"),
                      InstanceMethod<&NetlinkLane::Close>("close")});
}

NetlinkLane::NetlinkLane(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NetlinkLane>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsNumber() || !(info[2].IsString() || info[2].IsNull() || info[2].IsUndefined()))
    throw Napi::TypeError::New(env, "NetlinkLane(fd, portId, nsPath)");
  fd_ = info[0].As<Napi::Number>().Int32Value();
  portId_ = info[1].As<Napi::Number>().Uint32Value();
  if (info[2].IsString()) nsPath_ = info[2].As<Napi::String>().Utf8Value();
  if (sched_getaffinity(0, sizeof(allowed_), &allowed_) != 0) CPU_ZERO(&allowed_);
  // The function only carries settled exchanges back; it holds the loop open only while one is
  // outstanding (Ref/Unref around each), like a pool request would.
  done_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                        "tsnet:netlink.lane", 0, 1);
  done_.Unref(env);
  thread_ = std::thread([this]() { Loop(); });
}

NetlinkLane::~NetlinkLane() { Stop(); }

void NetlinkLane::PlaceThread() {
  // Alone at work: share the JS thread's CPU. With company: every CPU, so work spreads.
  int want = -1;
  if (busyLanes == 1) want = sched_getcpu();
  if (want == pinnedCpu_ || !thread_.joinable()) return;
  cpu_set_t set;
  if (want >= 0) {
    CPU_ZERO(&set);
    CPU_SET(want, &set);
  } else {
    if (CPU_COUNT(&allowed_) == 0) return;
    set = allowed_;
  }
  // A refusal (a cpuset that changed under us) only costs the optimisation.
  if (pthread_setaffinity_np(thread_.native_handle(), sizeof(set), &set) == 0) pinnedCpu_ = want;
}

Napi::Buffer<uint8_t> NetlinkLane::RequestArg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "seq must be a number");
  if (!info[1].IsBuffer()) throw Napi::TypeError::New(env, "request must be a Buffer");
  if (stopped_) throw Napi::Error::New(env, "netlink lane is closed");
  auto req = info[1].As<Napi::Buffer<uint8_t>>();
  if (req.Length() == 0) throw Napi::TypeError::New(env, "request must not be empty");
  return req;
}

Napi::Value NetlinkLane::Transact(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto req = RequestArg(info);
  return Enqueue(env, new Job{info[0].As<Napi::Number>().Uint32Value(),
                              std::vector<uint8_t>(req.Data(), req.Data() + req.Length()),
                              {}, {}, {}, {},
                              Napi::Promise::Deferred::New(env),
                              this});
}

Napi::Value NetlinkLane::TransactNow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto req = RequestArg(info);
  // Any lane at work may hold the RTNL lock for a long while (a group delete waits for grace
  // periods under it), and this lane's queue must keep its order: then the caller queues instead.
  if (busyLanes != 0) return env.Undefined();
  std::vector<uint8_t> replies;
  SysError err = tsnet::Transact(fd_, portId_, info[0].As<Napi::Number>().Uint32Value(), req.Data(), req.Length(),
                                 &replies, &inlineScratch);
  if (err.err != 0) throw ToJsError(env, err);
  return Napi::Buffer<uint8_t>::Copy(env, replies.data(), replies.size());
}

Napi::Value NetlinkLane::Sysctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsString()) throw Napi::TypeError::New(env, "sysctl(procPath, value)");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  if (!IsProcSysPath(path)) throw Napi::TypeError::New(env, "sysctl path must be under /proc/sys/");
  if (stopped_) throw Napi::Error::New(env, "netlink lane is closed");
  return Enqueue(env, new Job{0, {}, path, info[1].As<Napi::String>().Utf8Value(), {}, {},
                              Napi::Promise::Deferred::New(env), this});
}

Napi::Value NetlinkLane::Enqueue(Napi::Env env, Job* job) {
  Napi::Promise promise = job->deferred.Promise();
  if (outstanding_++ == 0) {
    busyLanes++;
    done_.Ref(env);
    Ref();  // the wrapper outlives every exchange it handed out
  }
  PlaceThread();
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(job);
  }
  cv_.notify_one();
  return promise;
}

void NetlinkLane::Settle(Napi::Env env, Job* job) {
  if (job->error.err != 0) job->deferred.Reject(ToJsError(env, job->error).Value());
  else job->deferred.Resolve(Napi::Buffer<uint8_t>::Copy(env, job->replies.data(), job->replies.size()));
  delete job;
  if (--outstanding_ == 0) {
    busyLanes--;
    if (!stopped_) done_.Unref(env);
    Unref();
  }
}

void NetlinkLane::Loop() {
  auto deliver = [](Napi::Env env, Napi::Function, Job* job) {
    if (env == nullptr) {  // the environment is going away: nobody is left to settle with
      delete job;
      return;
    }
    job->lane->Settle(env, job);
  };
  if (!nsPath_.empty()) nsError_ = EnterNetns(nsPath_);
  for (;;) {
    Job* job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this]() { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything handed out is done
      job = queue_.front();
      queue_.pop_front();
    }
    if (!job->request.empty()) job->error = tsnet::Transact(fd_, portId_, job->seq, job->request.data(), job->request.size(),
                                                                     &job->replies, &scratch_);
    else job->error = nsError_.err != 0 ? nsError_ : ProcSysWrite(job->sysctlPath, job->sysctlValue);
    if (done_.BlockingCall(job, deliver) != napi_ok) delete job;
  }
}

void NetlinkLane::Stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  // Exchanges finished before the join are still queued on the function and settle after this.
  done_.Release();
}

Napi::Value NetlinkLane::Close(const Napi::CallbackInfo& info) {
  Stop();
  return info.Env().Undefined();
}

}  // namespace tsnet
