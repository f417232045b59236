// Clarifx.ofx: one OpenFX image effect per clarifx node.
//
// The plugin is a translator. It embeds Python (or joins the host's), asks clarifx.ofx what to describe,
// and hands every per-instance action to a clarifx.ofx.Instance. Host data (parameter values, image
// properties) is gathered before the GIL is taken, so no host call is ever made while holding it: a host
// thread that holds its own lock and waits for the GIL cannot deadlock against us. No C++ exception and
// no Python exception leaves an entry point: errors become a host message and kOfxStatFailed.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>

#include <array>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "clarifx_ofx/ofx_api.h"

#define CLARIFX_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

// ---- Python helpers ----

// An owned reference.
class Ref {
 public:
  Ref() = default;
  explicit Ref(PyObject *p) : p_(p) {}
  Ref(const Ref &) = delete;
  Ref &operator=(const Ref &) = delete;
  Ref(Ref &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Ref &operator=(Ref &&o) noexcept {
    Py_XDECREF(p_);
    p_ = std::exchange(o.p_, nullptr);
    return *this;
  }
  ~Ref() { Py_XDECREF(p_); }
  PyObject *get() const { return p_; }
  PyObject *release() { return std::exchange(p_, nullptr); }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  PyObject *p_ = nullptr;
};

class Gil {
 public:
  Gil() : state_(PyGILState_Ensure()) {}
  ~Gil() { PyGILState_Release(state_); }
  Gil(const Gil &) = delete;
  Gil &operator=(const Gil &) = delete;

 private:
  PyGILState_STATE state_;
};

// The pending Python exception as one line (the traceback too on stderr with CLARIFX_OFX_DEBUG=1).
std::string python_error() {
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  std::string message = "unknown Python error";
  if (value) {
    Ref text(PyObject_Str(value));
    const char *c = text ? PyUnicode_AsUTF8(text.get()) : nullptr;
    if (c) message = c;
    PyErr_Clear();
  }
  // ValueError and OSError carry clarifx's one-line messages; anything else is named by its type.
  if (type && PyExceptionClass_Check(type) && !PyErr_GivenExceptionMatches(type, PyExc_ValueError) &&
      !PyErr_GivenExceptionMatches(type, PyExc_OSError)) {
    message = std::string(reinterpret_cast<PyTypeObject *>(type)->tp_name) + ": " + message;
  }
  const char *debug = std::getenv("CLARIFX_OFX_DEBUG");
  if (debug && *debug && std::strcmp(debug, "0") != 0) {
    PyErr_Restore(type, value, tb);
    PyErr_Print();
  } else {
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
  }
  return message;
}

// A new reference, or a std::runtime_error holding the Python error.
Ref check(PyObject *p) {
  if (!p) throw std::runtime_error(python_error());
  return Ref(p);
}

void set_item(PyObject *dict, const char *key, PyObject *value) {
  Ref v(value);
  if (!v || PyDict_SetItemString(dict, key, v.get()) != 0) throw std::runtime_error(python_error());
}

Ref ofx_module() { return check(PyImport_ImportModule("clarifx.ofx")); }

// ---- what Python describes ----

struct ParamSpec {
  std::string name, type, label, hint;  // type: double, int, boolean, choice, string
  bool file = false;
  double number_default = 0;
  std::string string_default;
  bool has_min = false, has_max = false;
  double min = 0, max = 0;
  std::vector<std::string> choices;
};

struct Effect {
  std::string identifier, node, label, grouping, description;
  std::vector<std::string> clips;  // clips[0] is "Source"
  std::vector<ParamSpec> params;
  bool cuda = false;
  unsigned major = 1, minor = 0;
};

std::string str_item(PyObject *dict, const char *key) {
  PyObject *v = PyDict_GetItemString(dict, key);  // borrowed
  if (!v || v == Py_None) return "";
  const char *c = PyUnicode_AsUTF8(v);
  if (!c) throw std::runtime_error(python_error());
  return c;
}

double number_item(PyObject *dict, const char *key, bool *present = nullptr) {
  PyObject *v = PyDict_GetItemString(dict, key);
  if (present) *present = v && v != Py_None;
  if (!v || v == Py_None) return 0;
  double d = PyFloat_AsDouble(v);
  if (d == -1.0 && PyErr_Occurred()) throw std::runtime_error(python_error());
  return d;
}

std::vector<std::string> str_list(PyObject *dict, const char *key) {
  std::vector<std::string> out;
  PyObject *v = PyDict_GetItemString(dict, key);
  if (!v || v == Py_None) return out;
  Ref seq = check(PySequence_Fast(v, key));
  for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq.get()); ++i) {
    const char *c = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(seq.get(), i));
    if (!c) throw std::runtime_error(python_error());
    out.emplace_back(c);
  }
  return out;
}

std::vector<Effect> read_effects(PyObject *list) {
  std::vector<Effect> effects;
  Ref seq = check(PySequence_Fast(list, "effects() must return a list"));
  for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq.get()); ++i) {
    PyObject *d = PySequence_Fast_GET_ITEM(seq.get(), i);
    Effect e;
    e.identifier = str_item(d, "identifier");
    e.node = str_item(d, "node");
    e.label = str_item(d, "label");
    e.grouping = str_item(d, "grouping");
    e.description = str_item(d, "description");
    e.clips = str_list(d, "clips");
    e.cuda = number_item(d, "cuda") != 0;
    Ref params = check(PySequence_Fast(PyDict_GetItemString(d, "params"), "params"));
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(params.get()); ++k) {
      PyObject *p = PySequence_Fast_GET_ITEM(params.get(), k);
      ParamSpec s;
      s.name = str_item(p, "name");
      s.type = str_item(p, "type");
      s.label = str_item(p, "label");
      s.hint = str_item(p, "hint");
      s.file = number_item(p, "file") != 0;
      if (s.type == "string") {
        s.string_default = str_item(p, "default");
      } else {
        s.number_default = number_item(p, "default");
      }
      s.min = number_item(p, "min", &s.has_min);
      s.max = number_item(p, "max", &s.has_max);
      s.choices = str_list(p, "choices");
      e.params.push_back(std::move(s));
    }
    e.major = static_cast<unsigned>(number_item(d, "major"));
    e.minor = static_cast<unsigned>(number_item(d, "minor"));
    if (e.clips.empty()) e.clips.push_back(kOfxImageEffectSimpleSourceClipName);
    effects.push_back(std::move(e));
  }
  return effects;
}

// ---- process state ----

OfxHost *g_host = nullptr;
const OfxPropertySuiteV1 *g_props = nullptr;
const OfxImageEffectSuiteV1 *g_effect = nullptr;
const OfxParameterSuiteV1 *g_params = nullptr;
const OfxMessageSuiteV1 *g_message = nullptr;
const OfxProgressSuiteV1 *g_progress = nullptr;  // optional: many hosts have none
bool g_host_multires = false;

std::mutex g_init_mutex;
bool g_init_done = false;
std::string g_init_error;
std::vector<Effect> g_effects;
std::vector<OfxPlugin> g_plugins;

void log_error(const std::string &message) { std::fprintf(stderr, "clarifx OFX: %s\n", message.c_str()); }

// Tell the host, and stderr (hosts bury messages from describe-time actions).
// Called from catch blocks, so it must not throw itself.
void report(OfxImageEffectHandle effect, const char *message) noexcept {
  std::fprintf(stderr, "clarifx OFX: %s\n", message);
  if (g_message && effect) g_message->message(effect, kOfxMessageError, "clarifx", "%s", message);
}

std::string directory_of(const std::string &path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

// Python extension modules (numpy, torch, clarifx._native) do not link libpython: they expect its
// symbols in the global scope. A host dlopens us RTLD_LOCAL, which puts our libpython dependency in
// our local scope only; re-opening it RTLD_NOLOAD | RTLD_GLOBAL promotes it.
void make_python_global() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void *>(&Py_IsInitialized), &info) && info.dli_fname) {
    if (!dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL)) {
      // Python linked into the host executable: its symbols are the executable's, already global.
      log_error(std::string("could not make ") + info.dli_fname + " global: " + dlerror());
    }
  }
}

struct Config {
  std::string python;                // the interpreter whose installation clarifx lives in
  std::vector<std::string> paths;    // prepended to sys.path
};

// Contents/Resources/clarifx.cfg (written by the build and by `clarifx ofx install`), plus the
// folder holding the clarifx package when the bundle sits inside it (site-packages/clarifx/ofx/).
Config read_config(const std::string &binary) {
  Config c;
  std::string contents = directory_of(directory_of(binary));  // .../Contents
  std::ifstream in(contents + "/Resources/clarifx.cfg");
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = line.substr(0, eq), value = line.substr(eq + 1);
    if (key == "python") c.python = value;
    if (key == "path" && !value.empty()) c.paths.push_back(value);
  }
  std::string bundle = directory_of(contents);
  std::string package_ofx = directory_of(bundle);
  if (package_ofx.size() > 12 && package_ofx.compare(package_ofx.size() - 12, 12, "/clarifx/ofx") == 0) {
    c.paths.push_back(directory_of(directory_of(package_ofx)));
  }
  if (!c.python.empty() && std::ifstream(c.python).fail()) c.python.clear();  // stale: built elsewhere
  return c;
}

std::string own_path() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void *>(&log_error), &info) && info.dli_fname) return info.dli_fname;
  return "";
}

void start_python(const Config &config) {
  if (Py_IsInitialized()) return;  // a host with its own Python (Nuke): join it
  PyConfig pc;
  PyConfig_InitPythonConfig(&pc);
  pc.install_signal_handlers = 0;  // the host owns signals
  pc.parse_argv = 0;
  PyStatus status = PyStatus_Ok();
  if (!config.python.empty()) {
    // Finding the interpreter's prefix (and a venv's pyvenv.cfg) from its program name.
    status = PyConfig_SetBytesString(&pc, &pc.program_name, config.python.c_str());
  }
  if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&pc);
  PyConfig_Clear(&pc);
  if (PyStatus_Exception(status)) {
    throw std::runtime_error(std::string("cannot start Python: ") + (status.err_msg ? status.err_msg : "unknown"));
  }
  PyEval_SaveThread();  // every entry takes the GIL for itself, from whatever thread the host calls on
}

template <size_t I>
OfxStatus main_entry(const char *action, const void *handle, OfxPropertySetHandle in, OfxPropertySetHandle out);
void set_host(OfxHost *host) { g_host = host; }

constexpr size_t kMaxEffects = 64;
template <size_t... I>
constexpr std::array<OfxPluginEntryPoint *, sizeof...(I)> entry_table(std::index_sequence<I...>) {
  return {&main_entry<I>...};
}

// Start (or join) Python and learn the effects, once per load of this library. Never throws.
void initialise() {
  std::lock_guard<std::mutex> lock(g_init_mutex);
  if (g_init_done) return;
  g_init_done = true;
  try {
    std::string binary = own_path();
    make_python_global();
    Config config = read_config(binary);
    start_python(config);
    Gil gil;
    PyObject *sys_path = PySys_GetObject("path");  // borrowed
    if (!sys_path) throw std::runtime_error("Python has no sys.path");
    for (auto it = config.paths.rbegin(); it != config.paths.rend(); ++it) {
      Ref p = check(PyUnicode_FromString(it->c_str()));
      int found = PySequence_Contains(sys_path, p.get());
      if (found == 0 && PyList_Insert(sys_path, 0, p.get()) != 0) throw std::runtime_error(python_error());
    }
    Ref module = ofx_module();
    Ref list = check(PyObject_CallMethod(module.get(), "effects", nullptr));
    g_effects = read_effects(list.get());
    if (g_effects.size() > kMaxEffects) g_effects.resize(kMaxEffects);
    static const auto entries = entry_table(std::make_index_sequence<kMaxEffects>{});
    for (size_t i = 0; i < g_effects.size(); ++i) {
      const Effect &e = g_effects[i];
      g_plugins.push_back(OfxPlugin{kOfxImageEffectPluginApi, kOfxImageEffectPluginApiVersion, e.identifier.c_str(),
                                    e.major, e.minor, &set_host, entries[i]});
    }
  } catch (const std::exception &e) {
    g_init_error = e.what();
  } catch (...) {
    g_init_error = "unknown error while starting Python";
  }
  if (!g_init_error.empty()) {
    g_effects.clear();
    g_plugins.clear();
    std::fprintf(stderr, "clarifx OFX: %s (no effects exposed; `clarifx ofx doctor` tells more)\n", g_init_error.c_str());
  }
}

// ---- host helpers ----

OfxPropertySetHandle effect_props(OfxImageEffectHandle effect) {
  OfxPropertySetHandle props = nullptr;
  if (g_effect->getPropertySet(effect, &props) != kOfxStatOK || !props) throw std::runtime_error("no effect properties");
  return props;
}

std::string get_string(OfxPropertySetHandle props, const char *name, const std::string &fallback = "") {
  char *v = nullptr;
  if (!props || g_props->propGetString(props, name, 0, &v) != kOfxStatOK || !v) return fallback;
  return v;
}

int get_int(OfxPropertySetHandle props, const char *name, int fallback = 0) {
  int v = fallback;
  if (!props || g_props->propGetInt(props, name, 0, &v) != kOfxStatOK) return fallback;
  return v;
}

double get_double(OfxPropertySetHandle props, const char *name, int index = 0, double fallback = 0) {
  double v = fallback;
  if (!props || g_props->propGetDouble(props, name, index, &v) != kOfxStatOK) return fallback;
  return v;
}

struct Instance {
  size_t effect;
  PyObject *python;  // a clarifx.ofx.Instance (owned)
};

Instance *instance_of(OfxImageEffectHandle effect) {
  void *p = nullptr;
  g_props->propGetPointer(effect_props(effect), kOfxPropInstanceData, 0, &p);
  if (!p) throw std::runtime_error("the host called an action on an effect that was never created");
  return static_cast<Instance *>(p);
}

struct ParamValue {
  const ParamSpec *spec;
  double number = 0;
  std::string text;
};

std::vector<ParamValue> param_values(const Instance &inst, OfxImageEffectHandle effect, OfxTime t) {
  OfxParamSetHandle set = nullptr;
  g_effect->getParamSet(effect, &set);
  std::vector<ParamValue> values;
  for (const ParamSpec &s : g_effects[inst.effect].params) {
    OfxParamHandle h = nullptr;
    if (!set || g_params->paramGetHandle(set, s.name.c_str(), &h, nullptr) != kOfxStatOK || !h) continue;
    ParamValue v{&s, 0, ""};
    OfxStatus st;
    if (s.type == "double") {
      double d = 0;
      st = g_params->paramGetValueAtTime(h, t, &d);
      v.number = d;
    } else if (s.type == "string") {
      char *c = nullptr;
      st = g_params->paramGetValueAtTime(h, t, &c);
      v.text = c ? c : "";
    } else {  // int, boolean, choice
      int i = 0;
      st = g_params->paramGetValueAtTime(h, t, &i);
      v.number = i;
    }
    if (st == kOfxStatOK) values.push_back(std::move(v));
  }
  return values;
}

Ref python_params(const std::vector<ParamValue> &values) {
  Ref d = check(PyDict_New());
  for (const ParamValue &v : values) {
    const std::string &type = v.spec->type;
    PyObject *o = type == "double"   ? PyFloat_FromDouble(v.number)
                  : type == "string" ? PyUnicode_FromString(v.text.c_str())
                                     : PyLong_FromLong(static_cast<long>(v.number));
    set_item(d.get(), v.spec->name.c_str(), o);
  }
  return d;
}

OfxImageClipHandle clip_handle(OfxImageEffectHandle effect, const char *name, OfxPropertySetHandle *props = nullptr) {
  OfxImageClipHandle clip = nullptr;
  if (g_effect->clipGetHandle(effect, name, &clip, props) != kOfxStatOK || !clip) {
    throw std::runtime_error(std::string("the host has no clip '") + name + "'");
  }
  return clip;
}

// ---- actions ----

OfxStatus on_load() {
  if (!g_host) return kOfxStatErrMissingHostFeature;
  g_props = static_cast<const OfxPropertySuiteV1 *>(g_host->fetchSuite(g_host->host, kOfxPropertySuite, 1));
  g_effect = static_cast<const OfxImageEffectSuiteV1 *>(g_host->fetchSuite(g_host->host, kOfxImageEffectSuite, 1));
  g_params = static_cast<const OfxParameterSuiteV1 *>(g_host->fetchSuite(g_host->host, kOfxParameterSuite, 1));
  // Version 2 begins with version 1's one member, so either serves for message().
  g_message = static_cast<const OfxMessageSuiteV1 *>(g_host->fetchSuite(g_host->host, kOfxMessageSuite, 2));
  if (!g_message) g_message = static_cast<const OfxMessageSuiteV1 *>(g_host->fetchSuite(g_host->host, kOfxMessageSuite, 1));
  g_progress = static_cast<const OfxProgressSuiteV1 *>(g_host->fetchSuite(g_host->host, kOfxProgressSuite, 1));
  if (!g_props || !g_effect || !g_params) return kOfxStatErrMissingHostFeature;
  g_host_multires = get_int(g_host->host, kOfxImageEffectPropSupportsMultiResolution, 0) != 0;
  if (!g_init_error.empty()) {
    log_error(g_init_error);
    return kOfxStatFailed;
  }
  return kOfxStatOK;
}

OfxStatus describe(const Effect &e, OfxImageEffectHandle effect) {
  OfxPropertySetHandle p = effect_props(effect);
  g_props->propSetString(p, kOfxPropLabel, 0, e.label.c_str());
  g_props->propSetString(p, kOfxPropShortLabel, 0, e.label.c_str());
  g_props->propSetString(p, kOfxPropLongLabel, 0, ("clarifx " + e.label).c_str());
  g_props->propSetString(p, kOfxImageEffectPluginPropGrouping, 0, e.grouping.c_str());
  g_props->propSetString(p, kOfxPropPluginDescription, 0, e.description.c_str());
  int n = 0;
  if (e.clips.size() == 1) g_props->propSetString(p, kOfxImageEffectPropSupportedContexts, n++, kOfxImageEffectContextFilter);
  g_props->propSetString(p, kOfxImageEffectPropSupportedContexts, n++, kOfxImageEffectContextGeneral);
  const char *depths[] = {kOfxBitDepthFloat, kOfxBitDepthHalf, kOfxBitDepthByte};
  for (int i = 0; i < 3; ++i) g_props->propSetString(p, kOfxImageEffectPropSupportedPixelDepths, i, depths[i]);
  g_props->propSetInt(p, kOfxImageEffectPropSupportsTiles, 0, 0);  // models want whole frames
  g_props->propSetInt(p, kOfxImageEffectPropSupportsMultiResolution, 0, 1);
  g_props->propSetInt(p, kOfxImageEffectPropTemporalClipAccess, 0, 1);
  g_props->propSetInt(p, kOfxImageEffectPropSupportsMultipleClipDepths, 0, 0);
  g_props->propSetInt(p, kOfxImageEffectPluginPropSingleInstance, 0, 0);
  g_props->propSetInt(p, kOfxImageEffectPluginPropHostFrameThreading, 0, 0);
  g_props->propSetString(p, kOfxImageEffectPluginRenderThreadSafety, 0, kOfxImageEffectRenderInstanceSafe);
  // GPU properties are 1.5: hosts that predate them answer "unknown property", which is fine.
  g_props->propSetString(p, kOfxImageEffectPropCudaRenderSupported, 0, e.cuda ? "true" : "false");
  g_props->propSetString(p, kOfxImageEffectPropCudaStreamSupported, 0, e.cuda ? "true" : "false");
  return kOfxStatOK;
}

void define_clip(OfxImageEffectHandle effect, const std::string &name, bool optional) {
  OfxPropertySetHandle c = nullptr;
  if (g_effect->clipDefine(effect, name.c_str(), &c) != kOfxStatOK || !c) {
    throw std::runtime_error("the host refused clip " + name);
  }
  g_props->propSetString(c, kOfxImageEffectPropSupportedComponents, 0, kOfxImageComponentRGBA);
  g_props->propSetString(c, kOfxImageEffectPropSupportedComponents, 1, kOfxImageComponentRGB);
  g_props->propSetInt(c, kOfxImageEffectPropSupportsTiles, 0, 0);
  if (name != kOfxImageEffectOutputClipName) {
    g_props->propSetInt(c, kOfxImageEffectPropTemporalClipAccess, 0, 1);
    g_props->propSetInt(c, kOfxImageClipPropOptional, 0, optional ? 1 : 0);
  }
}

OfxStatus describe_in_context(const Effect &e, OfxImageEffectHandle effect) {
  for (size_t i = 0; i < e.clips.size(); ++i) define_clip(effect, e.clips[i], i > 0);
  define_clip(effect, kOfxImageEffectOutputClipName, false);
  OfxParamSetHandle set = nullptr;
  if (g_effect->getParamSet(effect, &set) != kOfxStatOK || !set) throw std::runtime_error("no parameter set");
  for (const ParamSpec &s : e.params) {
    const char *type = s.type == "double"    ? kOfxParamTypeDouble
                       : s.type == "int"     ? kOfxParamTypeInteger
                       : s.type == "boolean" ? kOfxParamTypeBoolean
                       : s.type == "choice"  ? kOfxParamTypeChoice
                                             : kOfxParamTypeString;
    OfxPropertySetHandle p = nullptr;
    if (g_params->paramDefine(set, type, s.name.c_str(), &p) != kOfxStatOK || !p) {
      throw std::runtime_error("the host refused parameter " + s.name);
    }
    g_props->propSetString(p, kOfxPropLabel, 0, s.label.c_str());
    g_props->propSetString(p, kOfxParamPropHint, 0, s.hint.c_str());
    g_props->propSetString(p, kOfxParamPropScriptName, 0, s.name.c_str());
    if (s.type == "double") {
      g_props->propSetString(p, kOfxParamPropDoubleType, 0, kOfxParamDoubleTypePlain);
      g_props->propSetDouble(p, kOfxParamPropDefault, 0, s.number_default);
      if (s.has_min) g_props->propSetDouble(p, kOfxParamPropMin, 0, s.min);
      if (s.has_max) g_props->propSetDouble(p, kOfxParamPropMax, 0, s.max);
      if (s.has_min) g_props->propSetDouble(p, kOfxParamPropDisplayMin, 0, s.min);
      if (s.has_max) g_props->propSetDouble(p, kOfxParamPropDisplayMax, 0, s.max);
    } else if (s.type == "string") {
      g_props->propSetString(p, kOfxParamPropDefault, 0, s.string_default.c_str());
      g_props->propSetString(p, kOfxParamPropStringMode, 0, s.file ? kOfxParamStringIsFilePath : kOfxParamStringIsSingleLine);
      g_props->propSetInt(p, kOfxParamPropAnimates, 0, 0);
    } else {
      g_props->propSetInt(p, kOfxParamPropDefault, 0, static_cast<int>(s.number_default));
      if (s.type == "int") {
        if (s.has_min) g_props->propSetInt(p, kOfxParamPropMin, 0, static_cast<int>(s.min));
        if (s.has_max) g_props->propSetInt(p, kOfxParamPropMax, 0, static_cast<int>(s.max));
        if (s.has_min) g_props->propSetInt(p, kOfxParamPropDisplayMin, 0, static_cast<int>(s.min));
        if (s.has_max) g_props->propSetInt(p, kOfxParamPropDisplayMax, 0, static_cast<int>(s.max));
      }
      for (size_t k = 0; k < s.choices.size(); ++k) {
        g_props->propSetString(p, kOfxParamPropChoiceOption, static_cast<int>(k), s.choices[k].c_str());
      }
      if (s.type == "choice") g_props->propSetInt(p, kOfxParamPropAnimates, 0, 0);
    }
  }
  return kOfxStatOK;
}

OfxStatus create_instance(size_t index, OfxImageEffectHandle effect) {
  OfxPropertySetHandle props = effect_props(effect);
  std::string context = get_string(props, kOfxImageEffectPropContext);
  auto inst = std::make_unique<Instance>(Instance{index, nullptr});
  {
    Gil gil;
    Ref module = ofx_module();
    Ref cls = check(PyObject_GetAttrString(module.get(), "Instance"));
    inst->python = check(PyObject_CallFunction(cls.get(), "ss", g_effects[index].node.c_str(), context.c_str())).release();
  }
  g_props->propSetPointer(props, kOfxPropInstanceData, 0, inst.release());
  return kOfxStatOK;
}

OfxStatus destroy_instance(OfxImageEffectHandle effect) {
  OfxPropertySetHandle props = effect_props(effect);
  void *p = nullptr;
  g_props->propGetPointer(props, kOfxPropInstanceData, 0, &p);
  std::unique_ptr<Instance> inst(static_cast<Instance *>(p));
  g_props->propSetPointer(props, kOfxPropInstanceData, 0, nullptr);
  if (inst && inst->python) {
    Gil gil;
    Ref done(PyObject_CallMethod(inst->python, "close", nullptr));
    if (!done) log_error(python_error());
    Py_DECREF(inst->python);
  }
  return kOfxStatOK;
}

OfxStatus clip_preferences(OfxImageEffectHandle effect, OfxPropertySetHandle out) {
  // Every input keeps the components it comes with (RGB or RGBA); the output follows the Source.
  std::string source_comps;
  for (const std::string &name : g_effects[instance_of(effect)->effect].clips) {
    OfxPropertySetHandle props = nullptr;
    clip_handle(effect, name.c_str(), &props);
    std::string comps = get_string(props, kOfxImageClipPropUnmappedComponents, kOfxImageComponentRGBA);
    if (comps != kOfxImageComponentRGB) comps = kOfxImageComponentRGBA;  // alpha-only and others: as RGBA
    if (source_comps.empty()) source_comps = comps;
    g_props->propSetString(out, (kOfxImageClipPropComponentsPrefix + name).c_str(), 0, comps.c_str());
  }
  std::string output_key = std::string(kOfxImageClipPropComponentsPrefix) + kOfxImageEffectOutputClipName;
  g_props->propSetString(out, output_key.c_str(), 0, source_comps.c_str());
  OfxPropertySetHandle src = nullptr;
  clip_handle(effect, kOfxImageEffectSimpleSourceClipName, &src);
  std::string premult = get_string(src, kOfxImageEffectPropPreMultiplication, kOfxImagePreMultiplied);
  g_props->propSetString(out, kOfxImageEffectPropPreMultiplication, 0, premult.c_str());
  return kOfxStatOK;
}

// What every per-frame question to Python needs, gathered from the host before the GIL is taken.
struct FrameContext {
  OfxTime time = 0;
  std::vector<ParamValue> values;
  OfxRectD source_rod{};
  bool has_rod = false;
  double source_par = 1.0;
  double range[2] = {0, 0};  // the Source clip's frame range (temporal nodes clip their windows to it)
  bool has_range = false;
};

FrameContext frame_context(const Instance &inst, OfxImageEffectHandle effect, OfxTime t) {
  FrameContext c;
  c.time = t;
  c.values = param_values(inst, effect, t);
  OfxPropertySetHandle props = nullptr;
  OfxImageClipHandle src = clip_handle(effect, kOfxImageEffectSimpleSourceClipName, &props);
  c.has_rod = g_effect->clipGetRegionOfDefinition(src, t, &c.source_rod) == kOfxStatOK;
  c.source_par = get_double(props, kOfxImagePropPixelAspectRatio, 0, 1.0);
  c.has_range = props && g_props->propGetDoubleN(props, kOfxImageEffectPropFrameRange, 2, c.range) == kOfxStatOK;
  return c;
}

// The context as the dict clarifx.ofx.Instance takes (GIL held).
Ref python_context(const FrameContext &c) {
  Ref d = check(PyDict_New());
  set_item(d.get(), "time", PyFloat_FromDouble(c.time));
  set_item(d.get(), "params", python_params(c.values).release());
  const OfxRectD &r = c.source_rod;
  set_item(d.get(), "source_rod", c.has_rod ? Py_BuildValue("(dddd)", r.x1, r.y1, r.x2, r.y2) : (Py_INCREF(Py_None), Py_None));
  set_item(d.get(), "source_par", PyFloat_FromDouble(c.source_par));
  set_item(d.get(), "frame_range", c.has_range ? Py_BuildValue("(dd)", c.range[0], c.range[1]) : (Py_INCREF(Py_None), Py_None));
  set_item(d.get(), "multires", PyBool_FromLong(g_host_multires));
  return d;
}

OfxStatus region_of_definition(OfxImageEffectHandle effect, OfxPropertySetHandle in, OfxPropertySetHandle out) {
  const Instance &inst = *instance_of(effect);
  FrameContext c = frame_context(inst, effect, get_double(in, kOfxPropTime));
  if (!c.has_rod) return kOfxStatReplyDefault;
  double r[4];
  {
    Gil gil;
    Ref context = python_context(c);
    Ref result = check(PyObject_CallMethod(inst.python, "region_of_definition", "O", context.get()));
    if (result.get() == Py_None) return kOfxStatReplyDefault;
    if (!PyArg_ParseTuple(result.get(), "dddd", &r[0], &r[1], &r[2], &r[3])) throw std::runtime_error(python_error());
  }
  g_props->propSetDoubleN(out, kOfxImageEffectPropRegionOfDefinition, 4, r);
  return kOfxStatOK;
}

OfxStatus regions_of_interest(OfxImageEffectHandle effect, OfxPropertySetHandle in, OfxPropertySetHandle out) {
  // Models see whole frames: ask for all of every input, whatever part of the output is wanted.
  OfxTime t = get_double(in, kOfxPropTime);
  for (const std::string &name : g_effects[instance_of(effect)->effect].clips) {
    OfxImageClipHandle clip = clip_handle(effect, name.c_str());
    OfxRectD rod{};
    if (g_effect->clipGetRegionOfDefinition(clip, t, &rod) != kOfxStatOK) continue;
    double r[4] = {rod.x1, rod.y1, rod.x2, rod.y2};
    g_props->propSetDoubleN(out, (kOfxImageClipPropRoIPrefix + name).c_str(), 4, r);
  }
  return kOfxStatOK;
}

// Per input clip (in clip order), the frame ranges as flat (first, last) pairs.
using FrameRanges = std::vector<std::vector<double>>;

FrameRanges python_frames_needed(const Instance &inst, const FrameContext &c) {
  const std::vector<std::string> &clips = g_effects[inst.effect].clips;
  FrameRanges ranges(clips.size());
  Gil gil;
  Ref context = python_context(c);
  Ref result = check(PyObject_CallMethod(inst.python, "frames_needed", "O", context.get()));
  if (!PyDict_Check(result.get())) throw std::runtime_error("frames_needed must return {clip: ranges}");
  for (size_t k = 0; k < clips.size(); ++k) {
    PyObject *list = PyDict_GetItemString(result.get(), clips[k].c_str());  // borrowed
    if (!list) continue;
    Ref seq = check(PySequence_Fast(list, "frames_needed ranges must be a list"));
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq.get()); ++i) {
      double a, b;
      if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq.get(), i), "dd", &a, &b)) throw std::runtime_error(python_error());
      ranges[k].push_back(a);
      ranges[k].push_back(b);
    }
  }
  return ranges;
}

OfxStatus frames_needed(OfxImageEffectHandle effect, OfxPropertySetHandle in, OfxPropertySetHandle out) {
  const Instance &inst = *instance_of(effect);
  FrameRanges ranges = python_frames_needed(inst, frame_context(inst, effect, get_double(in, kOfxPropTime)));
  const std::vector<std::string> &clips = g_effects[inst.effect].clips;
  for (size_t k = 0; k < clips.size(); ++k) {
    std::string key = kOfxImageClipPropFrameRangePrefix + clips[k];
    g_props->propSetDoubleN(out, key.c_str(), static_cast<int>(ranges[k].size()), ranges[k].data());
  }
  return kOfxStatOK;
}

// kOfxStatOK with the clip and time to pass through when the node would hand back its input unchanged
// (a Denoise at strength 0): the host then copies that input and never calls Render.
OfxStatus is_identity(OfxImageEffectHandle effect, OfxPropertySetHandle in, OfxPropertySetHandle out) {
  const Instance &inst = *instance_of(effect);
  FrameContext c = frame_context(inst, effect, get_double(in, kOfxPropTime));
  std::string clip;
  double time = c.time;
  {
    Gil gil;
    Ref context = python_context(c);
    Ref result = check(PyObject_CallMethod(inst.python, "is_identity", "O", context.get()));
    if (result.get() == Py_None) return kOfxStatReplyDefault;
    const char *name = nullptr;
    if (!PyArg_ParseTuple(result.get(), "sd", &name, &time)) throw std::runtime_error(python_error());
    clip = name;
  }
  g_props->propSetString(out, kOfxPropName, 0, clip.c_str());
  g_props->propSetDouble(out, kOfxPropTime, 0, time);
  return kOfxStatOK;
}

// General context only. Every clarifx node makes one output frame per Source frame (temporal nodes
// clip their windows to the Source's range), so the domain is the Source's range. The host's default
// (the union of the non-optional inputs) says the same, since further inputs are optional; answering
// keeps hosts that count optional inputs in their default from stretching it.
OfxStatus time_domain(OfxImageEffectHandle effect, OfxPropertySetHandle out) {
  OfxPropertySetHandle props = nullptr;
  clip_handle(effect, kOfxImageEffectSimpleSourceClipName, &props);
  double range[2];
  if (!props || g_props->propGetDoubleN(props, kOfxImageEffectPropFrameRange, 2, range) != kOfxStatOK) {
    return kOfxStatReplyDefault;
  }
  g_props->propSetDoubleN(out, kOfxImageEffectPropFrameRange, 2, range);
  return kOfxStatOK;
}

struct ImageInfo {
  OfxPropertySetHandle handle = nullptr;
  void *data = nullptr;
  int bounds[4] = {0, 0, 0, 0};
  int row_bytes = 0;
  std::string depth, components, premultiplication;
  double par = 1.0;
};

// Releases every image fetched for a render, however the render ends.
struct Images {
  std::vector<OfxPropertySetHandle> held;
  ~Images() {
    for (auto h : held) g_effect->clipReleaseImage(h);
  }
  // False where the host has no image (outside the clip, an unconnected clip: Resolve hands NULL).
  bool fetch(OfxImageClipHandle clip, OfxTime t, ImageInfo &info) {
    OfxPropertySetHandle h = nullptr;
    OfxStatus st = g_effect->clipGetImage(clip, t, nullptr, &h);
    if (h) held.push_back(h);  // a host that fails yet hands an image still gets it back
    if (st != kOfxStatOK || !h) return false;
    info.handle = h;
    g_props->propGetPointer(h, kOfxImagePropData, 0, &info.data);
    g_props->propGetIntN(h, kOfxImagePropBounds, 4, info.bounds);
    info.row_bytes = get_int(h, kOfxImagePropRowBytes);
    info.depth = get_string(h, kOfxImageEffectPropPixelDepth);
    info.components = get_string(h, kOfxImageEffectPropComponents);
    info.premultiplication = get_string(h, kOfxImageEffectPropPreMultiplication, kOfxImagePreMultiplied);
    info.par = get_double(h, kOfxImagePropPixelAspectRatio, 0, 1.0);
    return true;
  }
};

PyObject *python_image(const ImageInfo &i) {
  Ref d = check(PyDict_New());
  set_item(d.get(), "data", PyLong_FromVoidPtr(i.data));
  set_item(d.get(), "bounds", Py_BuildValue("(iiii)", i.bounds[0], i.bounds[1], i.bounds[2], i.bounds[3]));
  set_item(d.get(), "row_bytes", PyLong_FromLong(i.row_bytes));
  set_item(d.get(), "depth", PyUnicode_FromString(i.depth.c_str()));
  set_item(d.get(), "components", PyUnicode_FromString(i.components.c_str()));
  set_item(d.get(), "premultiplication", PyUnicode_FromString(i.premultiplication.c_str()));
  set_item(d.get(), "par", PyFloat_FromDouble(i.par));
  return d.release();
}

// The host's progress bar for one render, when it offers the (optional) progress suite.
class Progress {
 public:
  Progress(OfxImageEffectHandle effect, const std::string &label) : effect_(effect) {
    started_ = g_progress && g_progress->progressStart(effect, label.c_str()) == kOfxStatOK;
  }
  ~Progress() {
    if (started_) g_progress->progressEnd(effect_);
  }
  Progress(const Progress &) = delete;
  Progress &operator=(const Progress &) = delete;
  bool started() const { return started_; }

 private:
  OfxImageEffectHandle effect_;
  bool started_ = false;
};

bool aborted(OfxImageEffectHandle effect) { return g_effect->abort && g_effect->abort(effect) != 0; }

OfxStatus render(OfxImageEffectHandle effect, OfxPropertySetHandle in) {
  const Instance &inst = *instance_of(effect);
  const Effect &e = g_effects[inst.effect];
  OfxTime t = get_double(in, kOfxPropTime);
  int window[4] = {0, 0, 0, 0};
  g_props->propGetIntN(in, kOfxImageEffectPropRenderWindow, 4, window);
  int cuda = get_int(in, kOfxImageEffectPropCudaEnabled, 0);
  void *stream = nullptr;
  if (cuda && g_props->propGetPointer(in, kOfxImageEffectPropCudaStream, 0, &stream) != kOfxStatOK) stream = nullptr;

  FrameContext c = frame_context(inst, effect, t);
  FrameRanges ranges = python_frames_needed(inst, c);
  OfxImageClipHandle dst = clip_handle(effect, kOfxImageEffectOutputClipName);

  // An abandoned render returns kOfxStatFailed (its output is not a picture the host may keep) but
  // posts no message: the host asked for it.
  Progress progress(effect, "clarifx " + e.label);
  Images images;
  ImageInfo output;
  if (aborted(effect)) return kOfxStatFailed;
  if (!images.fetch(dst, t, output)) throw std::runtime_error("the host gave no output image");
  struct ClipImages {
    bool connected;
    std::vector<std::pair<OfxTime, ImageInfo>> frames;  // a frame the host cannot give stays absent (None)
  };
  std::vector<ClipImages> inputs;
  for (size_t k = 0; k < e.clips.size(); ++k) {
    OfxPropertySetHandle props = nullptr;
    OfxImageClipHandle clip = clip_handle(effect, e.clips[k].c_str(), &props);
    ClipImages ci{get_int(props, kOfxImageClipPropConnected, 1) != 0, {}};
    for (size_t r = 0; ci.connected && r + 1 < ranges[k].size(); r += 2) {
      for (double f = ranges[k][r]; f <= ranges[k][r + 1]; f += 1) {
        if (aborted(effect)) return kOfxStatFailed;  // between frames: each fetch may make the host render
        ImageInfo info;
        ci.frames.emplace_back(f, images.fetch(clip, f, info) ? info : ImageInfo{});
      }
    }
    inputs.push_back(std::move(ci));
  }

  Gil gil;
  Ref args = python_context(c);
  set_item(args.get(), "window", Py_BuildValue("(iiii)", window[0], window[1], window[2], window[3]));
  set_item(args.get(), "cuda", PyBool_FromLong(cuda));
  set_item(args.get(), "stream", PyLong_FromVoidPtr(stream));
  set_item(args.get(), "output", python_image(output));
  Ref clips = check(PyList_New(0));
  for (size_t k = 0; k < inputs.size(); ++k) {
    Ref frames = check(PyDict_New());
    for (const auto &[f, info] : inputs[k].frames) {
      Ref key = check(PyLong_FromLong(static_cast<long>(f)));
      Ref value = info.handle ? check(python_image(info)) : Ref((Py_INCREF(Py_None), Py_None));
      if (PyDict_SetItem(frames.get(), key.get(), value.get()) != 0) throw std::runtime_error(python_error());
    }
    Ref clip = check(Py_BuildValue("{s:s,s:O,s:O}", "name", e.clips[k].c_str(), "connected",
                                   inputs[k].connected ? Py_True : Py_False, "frames", frames.get()));
    if (PyList_Append(clips.get(), clip.get()) != 0) throw std::runtime_error(python_error());
  }
  set_item(args.get(), "clips", clips.release());
  // Python polls the host between its stages through these (ctypes releases the GIL around each call).
  set_item(args.get(), "effect", PyLong_FromVoidPtr(effect));
  set_item(args.get(), "abort", PyLong_FromVoidPtr(g_effect->abort ? reinterpret_cast<void *>(g_effect->abort) : nullptr));
  set_item(args.get(), "progress",
           PyLong_FromVoidPtr(progress.started() ? reinterpret_cast<void *>(g_progress->progressUpdate) : nullptr));
  Ref done = check(PyObject_CallMethod(inst.python, "render", "O", args.get()));
  return PyObject_IsTrue(done.get()) == 1 ? kOfxStatOK : kOfxStatFailed;
}

OfxStatus purge_caches() {
  Gil gil;
  Ref module = ofx_module();
  check(PyObject_CallMethod(module.get(), "purge_caches", nullptr));
  return kOfxStatOK;
}

OfxStatus dispatch(size_t index, const char *action, OfxImageEffectHandle effect, OfxPropertySetHandle in,
                   OfxPropertySetHandle out) {
  try {
    if (!action) return kOfxStatErrValue;
    if (index >= g_effects.size()) return kOfxStatErrFatal;
    const Effect &e = g_effects[index];
    const std::string a = action;
    if (a == kOfxActionLoad) return on_load();
    if (!g_props || !g_effect || !g_params) return kOfxStatErrMissingHostFeature;  // no Load yet
    if (a == kOfxActionUnload) return kOfxStatOK;  // Python stays: it cannot be restarted in a process
    if (a == kOfxActionDescribe) return describe(e, effect);
    if (a == kOfxImageEffectActionDescribeInContext) return describe_in_context(e, effect);
    if (a == kOfxActionCreateInstance) return create_instance(index, effect);
    if (a == kOfxActionDestroyInstance) return destroy_instance(effect);
    if (a == kOfxImageEffectActionGetClipPreferences) return clip_preferences(effect, out);
    if (a == kOfxImageEffectActionGetTimeDomain) return time_domain(effect, out);
    if (a == kOfxImageEffectActionGetRegionOfDefinition) return region_of_definition(effect, in, out);
    if (a == kOfxImageEffectActionGetRegionsOfInterest) return regions_of_interest(effect, in, out);
    if (a == kOfxImageEffectActionGetFramesNeeded) return frames_needed(effect, in, out);
    if (a == kOfxImageEffectActionIsIdentity) return is_identity(effect, in, out);
    if (a == kOfxImageEffectActionRender) return render(effect, in);
    if (a == kOfxImageEffectActionBeginSequenceRender || a == kOfxImageEffectActionEndSequenceRender) return kOfxStatOK;
    if (a == kOfxActionPurgeCaches) return purge_caches();
    return kOfxStatReplyDefault;  // InstanceChanged, SyncPrivateData, ...
  } catch (const std::exception &err) {
    report(effect, err.what());
  } catch (...) {
    report(effect, "unknown error");
  }
  return kOfxStatFailed;
}

template <size_t I>
OfxStatus main_entry(const char *action, const void *handle, OfxPropertySetHandle in, OfxPropertySetHandle out) {
  return dispatch(I, action, static_cast<OfxImageEffectHandle>(const_cast<void *>(handle)), in, out);
}

}  // namespace

// The exported entry points catch everything too: nothing may unwind into a host.
CLARIFX_EXPORT int OfxGetNumberOfPlugins(void) {
  try {
    initialise();
    return static_cast<int>(g_plugins.size());
  } catch (...) {
    return 0;
  }
}

CLARIFX_EXPORT OfxPlugin *OfxGetPlugin(int nth) {
  try {
    initialise();
    if (nth < 0 || static_cast<size_t>(nth) >= g_plugins.size()) return nullptr;
    return &g_plugins[static_cast<size_t>(nth)];
  } catch (...) {
    return nullptr;
  }
}

CLARIFX_EXPORT OfxStatus OfxSetHost(const OfxHost *host) {
  g_host = const_cast<OfxHost *>(host);
  return kOfxStatOK;
}
