// twinblade native addon: the few syscalls Node lacks (placeholder until the HAL work lands).
#include <napi.h>

static Napi::Value Version(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), 1);
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("version", Napi::Function::New(env, Version));
  return exports;
}

NODE_API_MODULE(twinblade_native, Init)
