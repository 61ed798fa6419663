# lossguard_probe_torch(PYTHON): what the torch package that PYTHON imports is, the way torch's own
# cpp_extension builds extensions against it. Sets, in the caller's scope:
#   LOSSGUARD_TORCH_VERSION   torch.__version__ (written into the package: see _build_info.py.in)
#   LOSSGUARD_TORCH_LIB_DIR   torch's lib/ directory (libtorch_python lives there too)
#   LOSSGUARD_TORCH_INCLUDES  its include paths
#   LOSSGUARD_TORCH_CXX11_ABI 0 or 1: every translation unit that shares std::string with LibTorch
#                             must be compiled with the same _GLIBCXX_USE_CXX11_ABI (pip wheels
#                             before torch 2.7 use 0), so the caller applies it to the whole build.
#
# lossguard_torch_from_python(PYTHON): the probe, and the imported target `torch` made from it:
# those include paths, libtorch, libtorch_cpu and libc10 from that lib/ directory. Not
# find_package(Torch): the TorchConfig.cmake of a CUDA wheel from PyPI insists on a CUDA toolkit,
# which a CPU machine does not have and the collector does not use.
function(lossguard_probe_torch python)
  set(probe [=[
import os, torch
from torch.utils import cpp_extension
print("|".join(cpp_extension.include_paths()))
print(os.path.join(os.path.dirname(torch.__file__), "lib"))
print(int(torch._C._GLIBCXX_USE_CXX11_ABI))
print(torch.__version__)
]=])
  execute_process(COMMAND ${python} -c "${probe}" RESULT_VARIABLE failed OUTPUT_VARIABLE out
                  ERROR_VARIABLE err OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(failed)
    message(FATAL_ERROR
      "lossguard builds against the torch of the interpreter that builds it, but ${python} cannot "
      "import torch:\n${err}\nInstall torch into that interpreter first. With pip, build without "
      "build isolation so that the build sees it: pip install --no-build-isolation <lossguard source>")
  endif()
  string(REPLACE "\n" ";" lines "${out}")
  list(LENGTH lines count)
  if(NOT count EQUAL 4)
    message(FATAL_ERROR "unexpected answer from ${python} about its torch: ${out}")
  endif()
  list(GET lines 0 includes)
  string(REPLACE "|" ";" includes "${includes}")
  list(GET lines 1 lib_dir)
  list(GET lines 2 cxx11_abi)
  list(GET lines 3 version)

  set(LOSSGUARD_TORCH_VERSION ${version} PARENT_SCOPE)
  set(LOSSGUARD_TORCH_LIB_DIR ${lib_dir} PARENT_SCOPE)
  set(LOSSGUARD_TORCH_INCLUDES ${includes} PARENT_SCOPE)
  set(LOSSGUARD_TORCH_CXX11_ABI ${cxx11_abi} PARENT_SCOPE)
endfunction()

function(lossguard_torch_from_python python)
  lossguard_probe_torch(${python})
  set(libraries "")
  foreach(name torch torch_cpu c10)
    find_library(lossguard_torch_${name}_library ${name} PATHS ${LOSSGUARD_TORCH_LIB_DIR}
                 NO_DEFAULT_PATH REQUIRED)
    list(APPEND libraries ${lossguard_torch_${name}_library})
  endforeach()
  add_library(torch INTERFACE IMPORTED GLOBAL)
  target_include_directories(torch SYSTEM INTERFACE ${LOSSGUARD_TORCH_INCLUDES})
  target_link_libraries(torch INTERFACE ${libraries})
  foreach(name VERSION LIB_DIR INCLUDES CXX11_ABI)
    set(LOSSGUARD_TORCH_${name} ${LOSSGUARD_TORCH_${name}} PARENT_SCOPE)
  endforeach()
endfunction()
