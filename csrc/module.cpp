// The Python module pyext._C: importing it registers the ops (TORCH_LIBRARY in ops.cpp). It offers
// build_info(), which says what this binary was compiled with, and the ops' eager entry points.
#include <Python.h>
#include <ATen/Parallel.h>
#include <ATen/PythonTorchFunctionTLS.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>

#include <atomic>
#include <cstring>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "call.h"

#define PYEXT_STR2(...) #__VA_ARGS__
#define PYEXT_STR(...) PYEXT_STR2(__VA_ARGS__)

namespace {

PyObject* build_info(PyObject*, PyObject*) {
#ifdef PYEXT_WITH_CUDA
  PyObject* cuda = Py_True;
  const char* archs = PYEXT_STR(PYEXT_CUDA_ARCHS);
#else
  PyObject* cuda = Py_False;
  const char* archs = "";
#endif
#if defined(PYEXT_AVX512_BF16)
  const char* cpu_vec = "avx512_bf16";
#elif defined(CPU_CAPABILITY_AVX512)
  const char* cpu_vec = "avx512";
#elif defined(CPU_CAPABILITY_AVX2)
  const char* cpu_vec = "avx2";
#else
  const char* cpu_vec = "default";
#endif
#ifdef _OPENMP
  PyObject* openmp = Py_True;
#else
  PyObject* openmp = Py_False;
#endif
#if defined(PYEXT_HALF_VECTOR_LOADS) && defined(CPU_CAPABILITY_AVX512)
  PyObject* half_vector_loads = Py_True;  // cpu_kernels.cpp's load_in_halves
#else
  PyObject* half_vector_loads = Py_False;
#endif
  return Py_BuildValue("{s:O,s:s,s:s,s:O,s:O}", "cuda", cuda, "cuda_archs", archs, "cpu_vec", cpu_vec, "openmp",
                       openmp, "half_vector_loads", half_vector_loads);
}

// How many threads an at::parallel_for inside this library runs on now (at most torch.get_num_threads()).
// Its parallel region is compiled into each caller: without OpenMP here it would run on one thread.
PyObject* parallel_for_threads(PyObject*, PyObject*) {
  std::atomic<int> used{0};
  Py_BEGIN_ALLOW_THREADS
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    const int mine = at::get_thread_num() + 1;  // a running maximum of the thread numbers seen
    int seen = used.load();
    while (seen < mine && !used.compare_exchange_weak(seen, mine)) {
    }
  });
  Py_END_ALLOW_THREADS
  return PyLong_FromLong(used.load());
}

// --- eager entry points --------------------------------------------------------------------------
//
// pyext.ops's wrappers and pyext.optim.SGD's step call these outside torch.compile. Each calls its op
// through the dispatcher with typed arguments (pyext::call), so autograd, vmap, tracing, torch_dispatch
// modes and the device kernels all apply as they do through torch.ops, without the boxed call from
// Python (about 1 us of the 3.3 us of an add of one-element tensors; for SGD's three lists of 540
// tensors, about 45 us). Each is bound to a fallback, a Python function of the same arguments that
// calls the op through torch.ops (_entry_point, below), and hands it, with the arguments as they came,
// what it does not take: a tensor subclass or an active __torch_function__ mode (torch.ops hands those
// to __torch_function__), and any argument of another type than those below (torch.ops then raises
// torch's error for it).

struct NotTaken {};  // an argument left to torch.ops

PyTypeObject* parameter_type = nullptr;  // torch.nn.Parameter: a subclass with __torch_function__ disabled

template <typename T>
T from_python(PyObject* o);

// A torch.Tensor or torch.nn.Parameter, not a subclass
bool is_plain_tensor(PyObject* o) {
  const PyTypeObject* type = Py_TYPE(o);
  return type == reinterpret_cast<PyTypeObject*>(THPVariableClass) || type == parameter_type;
}

template <>
at::Tensor from_python<at::Tensor>(PyObject* o) {
  if (!is_plain_tensor(o)) throw NotTaken{};
  return THPVariable_Unpack(o);
}
template <>
std::optional<at::Tensor> from_python<std::optional<at::Tensor>>(PyObject* o) {
  if (o == Py_None) return std::nullopt;
  return from_python<at::Tensor>(o);
}
template <>
int64_t from_python<int64_t>(PyObject* o) {
  if (!PyLong_CheckExact(o)) throw NotTaken{};
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
  if (overflow) throw NotTaken{};
  return v;
}
template <>
double from_python<double>(PyObject* o) {
  if (PyFloat_CheckExact(o)) return PyFloat_AS_DOUBLE(o);
  return static_cast<double>(from_python<int64_t>(o));
}
template <>
bool from_python<bool>(PyObject* o) {
  if (!PyBool_Check(o)) throw NotTaken{};
  return o == Py_True;
}
// A list of tensors (the C++ side takes an at::TensorList viewing it)
template <>
std::vector<at::Tensor> from_python<std::vector<at::Tensor>>(PyObject* o) {
  if (!PyList_CheckExact(o)) throw NotTaken{};
  std::vector<at::Tensor> tensors;
  tensors.reserve(PyList_GET_SIZE(o));
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(o); ++i) tensors.push_back(from_python<at::Tensor>(PyList_GET_ITEM(o, i)));
  return tensors;
}
template <>
c10::Scalar from_python<c10::Scalar>(PyObject* o) {
  if (PyBool_Check(o)) return c10::Scalar(o == Py_True);
  if (PyFloat_CheckExact(o)) return c10::Scalar(PyFloat_AS_DOUBLE(o));
  return c10::Scalar(from_python<int64_t>(o));
}

// The GIL is let go while the op runs, as torch's own bindings do.
struct GilReleased {
  PyThreadState* state = PyEval_SaveThread();
  ~GilReleased() { PyEval_RestoreThread(state); }
};

// What an argument of C++ type T is held in while the op runs: itself, or for a list the vector it views.
template <typename T>
struct Held {
  using type = std::decay_t<T>;
};
template <>
struct Held<at::TensorList> {
  using type = std::vector<at::Tensor>;
};

// The entry point of pyext::call function fn: its arguments, positional, converted from Python. It is
// called as a method of its fallback (the function object's self).
template <auto fn>
struct Eager;
template <typename R, typename... Args, R (*fn)(Args...)>
struct Eager<fn> {
  static PyObject* call(PyObject* fallback, PyObject* const* py, Py_ssize_t n) {
    HANDLE_TH_ERRORS
    if (n != sizeof...(Args) || at::impl::torch_function_mode_enabled()) {
      return PyObject_Vectorcall(fallback, py, n, nullptr);
    }
    std::tuple<typename Held<Args>::type...> args;
    try {
      args = convert(py, std::index_sequence_for<Args...>{});
    } catch (const NotTaken&) {
      return PyObject_Vectorcall(fallback, py, n, nullptr);
    }
    if constexpr (std::is_void_v<R>) {
      {
        GilReleased released;
        std::apply(fn, args);
      }
      Py_RETURN_NONE;
    } else {
      at::Tensor out;
      {
        GilReleased released;
        out = std::apply(fn, args);
      }
      return THPVariable_Wrap(std::move(out));
    }
    END_HANDLE_TH_ERRORS
  }
  template <size_t... I>
  static std::tuple<typename Held<Args>::type...> convert(PyObject* const* py, std::index_sequence<I...>) {
    return {from_python<typename Held<Args>::type>(py[I])...};
  }
};

using at::Tensor;

// Whether the lists hold plain, strided (not sparse) tensors, all of the first one's device and dtype:
// pyext.optim.SGD's step then has one group and skips torch's grouping (which builds new lists: 95 us for
// three lists of 540 tensors; this, 10 us).
PyObject* one_device_and_dtype(PyObject*, PyObject* const* lists, Py_ssize_t count) {
  HANDLE_TH_ERRORS
  const at::Tensor* first = nullptr;
  for (Py_ssize_t l = 0; l < count; ++l) {
    if (!PyList_CheckExact(lists[l])) Py_RETURN_FALSE;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lists[l]); ++i) {
      PyObject* o = PyList_GET_ITEM(lists[l], i);
      if (!is_plain_tensor(o)) Py_RETURN_FALSE;
      const at::Tensor& t = THPVariable_Unpack(o);
      if (first == nullptr) first = &t;
      if (t.layout() != at::kStrided || t.device() != first->device() || t.scalar_type() != first->scalar_type()) {
        Py_RETURN_FALSE;
      }
    }
  }
  Py_RETURN_TRUE;
  END_HANDLE_TH_ERRORS
}

// An overload of a pyext::call function, by its type.
template <typename Signature>
constexpr Signature* overload(Signature* fn) { return fn; }

// add, mul and their in-place forms: the Tensor overload for a plain tensor `other`, else the Scalar one (which
// hands anything but a number to the fallback).
template <auto tensor_fn, auto scalar_fn>
struct EagerBinary {
  static PyObject* call(PyObject* fallback, PyObject* const* py, Py_ssize_t n) {
    return n >= 2 && is_plain_tensor(py[1]) ? Eager<tensor_fn>::call(fallback, py, n)
                                            : Eager<scalar_fn>::call(fallback, py, n);
  }
};

#define PYEXT_EAGER(name, ...) {name, reinterpret_cast<PyCFunction>(__VA_ARGS__::call), METH_FASTCALL, nullptr}

PyMethodDef entry_points[] = {
    PYEXT_EAGER("add", EagerBinary<overload<Tensor(const Tensor&, const Tensor&, const c10::Scalar&)>(pyext::call::add),
                                   overload<Tensor(const Tensor&, const c10::Scalar&, const c10::Scalar&)>(
                                       pyext::call::add)>),
    PYEXT_EAGER("add_", EagerBinary<overload<void(Tensor&, const Tensor&, const c10::Scalar&)>(pyext::call::add_),
                                    overload<void(Tensor&, const c10::Scalar&, const c10::Scalar&)>(
                                        pyext::call::add_)>),
    PYEXT_EAGER("mul", EagerBinary<overload<Tensor(const Tensor&, const Tensor&)>(pyext::call::mul),
                                   overload<Tensor(const Tensor&, const c10::Scalar&)>(pyext::call::mul)>),
    PYEXT_EAGER("mul_", EagerBinary<overload<void(Tensor&, const Tensor&)>(pyext::call::mul_),
                                    overload<void(Tensor&, const c10::Scalar&)>(pyext::call::mul_)>),
    PYEXT_EAGER("sigmoid", Eager<pyext::call::sigmoid>),
    PYEXT_EAGER("binary_cross_entropy", Eager<pyext::call::bce>),
    PYEXT_EAGER("binary_cross_entropy_with_logits", Eager<pyext::call::bce_logits>),
    PYEXT_EAGER("mse_loss", Eager<pyext::call::mse>),
    PYEXT_EAGER("sgd_step_", Eager<pyext::call::sgd_step_>),
    {nullptr, nullptr, 0, nullptr},
};

// _entry_point(name, fallback): the eager entry point `name` bound to its fallback.
PyObject* entry_point(PyObject*, PyObject* const* args, Py_ssize_t n) {
  if (n != 2 || !PyUnicode_Check(args[0]) || !PyCallable_Check(args[1])) {
    PyErr_SetString(PyExc_TypeError, "_entry_point(name: str, fallback: callable)");
    return nullptr;
  }
  const char* name = PyUnicode_AsUTF8(args[0]);
  if (!name) return nullptr;
  for (PyMethodDef* m = entry_points; m->ml_name; ++m) {
    if (std::strcmp(m->ml_name, name) == 0) return PyCFunction_New(m, args[1]);
  }
  PyErr_Format(PyExc_ValueError, "pyext._C has no entry point %s", name);
  return nullptr;
}

PyMethodDef methods[] = {
    {"build_info", build_info, METH_NOARGS, "What this build of pyext's kernels was compiled with."},
    {"_parallel_for_threads", parallel_for_threads, METH_NOARGS,
     "How many threads at::parallel_for runs on inside pyext's kernels now."},
    {"_one_device_and_dtype", reinterpret_cast<PyCFunction>(one_device_and_dtype), METH_FASTCALL,
     "Whether the lists hold plain, strided tensors (no subclasses) of one device and dtype."},
    {"_entry_point", reinterpret_cast<PyCFunction>(entry_point), METH_FASTCALL,
     "_entry_point(name, fallback): the op's eager entry point, which hands fallback what it does not take."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "pyext's compiled kernels", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C() {
  PyObject* parameter_module = PyImport_ImportModule("torch.nn.parameter");
  if (!parameter_module) return nullptr;
  PyObject* parameter = PyObject_GetAttrString(parameter_module, "Parameter");
  Py_DECREF(parameter_module);
  if (!parameter) return nullptr;
  parameter_type = reinterpret_cast<PyTypeObject*>(parameter);  // kept for the module's lifetime
  return PyModule_Create(&module);
}
