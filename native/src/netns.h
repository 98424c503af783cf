// Running one small job inside another network namespace.
//
// setns(2) changes the namespace of the calling *thread*. A libuv pool thread that was switched
// and not switched back would carry the wrong namespace into unrelated fs/dns/crypto work, so every
// namespace-bound job runs on a fresh std::thread that enters the namespace, does its job and exits.
// The thread never has to switch back: its namespace dies with it.
#pragma once
#include <functional>
#include <string>

namespace tsnet {

struct SysError {
  int err = 0;               // errno, 0 = success
  std::string syscall;       // which call failed, for the error message
};

// Runs fn on a new thread inside the namespace at nsPath (empty: the caller's namespace, no thread).
// fn returns 0 on success or sets err/syscall. Blocks the calling (pool) thread until done.
SysError RunInNetns(const std::string& nsPath, const std::function<SysError()>& fn);

// Moves the calling thread into the namespace at nsPath for good. Only for a thread tsnet owns
// and never lends to other work (a NetlinkLane's), never for a pool thread.
SysError EnterNetns(const std::string& nsPath);

// A /proc/sys file, as seen from the calling thread's network namespace. IsProcSysPath is the check
// every caller makes first: under /proc/sys/, no "..".
bool IsProcSysPath(const std::string& path);
SysError ProcSysWrite(const std::string& path, const std::string& value);
SysError ProcSysRead(const std::string& path, std::string* out);

// Creates a new network namespace and bind-mounts it at path (like `ip netns add`).
SysError CreateNetns(const std::string& path);
// Unmounts and removes a namespace created by CreateNetns. Missing path is success.
SysError DeleteNetns(const std::string& path);

}  // namespace tsnet
