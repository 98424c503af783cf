// A SysError as the JavaScript error kernel/native.ts expects: message, errno and syscall.
#pragma once
#include <napi.h>

#include <cstring>

#include "netns.h"

namespace tsnet {

inline Napi::Error ToJsError(Napi::Env env, const SysError& e) {
  Napi::Error err = Napi::Error::New(env, e.syscall + ": " + std::strerror(e.err));
  err.Set("errno", Napi::Number::New(env, e.err));
  err.Set("syscall", Napi::String::New(env, e.syscall));
  return err;
}

}  // namespace tsnet
