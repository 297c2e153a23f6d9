# The layering the build enforces (docs/architecture.md, "Layers").
#
# Every layer is declared with ember_layer() in its directory's CMakeLists.txt:
#
#   ember_layer(net                       # library ember_net, headers "net/..."
#     SOURCES connection.cc tcp.cc ...
#     DEPS wire                           # layers below it: linked PUBLIC, headers visible
#                                         # (PRIVATE_DEPS: linked PRIVATE, visible to it alone)
#     LIBS ember_asio OpenSSL::SSL)       # anything else it links PUBLIC
#   ember_layer(apps EXECUTABLE ember SOURCES main.cc DEPS cli)   # a program on top
#
# A library layer exports one include root, ${CMAKE_BINARY_DIR}/include_roots/<layer>/,
# holding a symlink <layer> -> its source directory (plus EXPORTS: paths under include/,
# e.g. "ember/status.h"). So `#include "net/connection.h"` compiles only in a target that
# links ember_net, directly or through PUBLIC links; no target sees all of src/.
#
# ember_write_layer_graph() (called once, after every add_subdirectory) reads the link
# graph back from the targets and writes ${CMAKE_BINARY_DIR}/layers.json, which the
# include check (tests/layering/check_includes.py, ctest layering_test) reads: the graph
# lives in the DEPS of the ember_layer() calls and nowhere else.

set(EMBER_INCLUDE_ROOTS ${CMAKE_BINARY_DIR}/include_roots)

# Makes `link` a symlink to `target` (replacing a stale one).
function(_ember_symlink target link)
  if(IS_SYMLINK ${link})
    file(READ_SYMLINK ${link} current)
    if(current STREQUAL target)
      return()
    endif()
    file(REMOVE ${link})
  endif()
  get_filename_component(parent ${link} DIRECTORY)
  file(MAKE_DIRECTORY ${parent})
  file(CREATE_LINK ${target} ${link} SYMBOLIC)
endfunction()

function(ember_layer layer)
  cmake_parse_arguments(L "" "EXECUTABLE" "SOURCES;DEPS;PRIVATE_DEPS;LIBS;EXPORTS" ${ARGN})
  if(L_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "ember_layer(${layer}): unknown arguments ${L_UNPARSED_ARGUMENTS}")
  endif()
  list(TRANSFORM L_DEPS PREPEND ember_ OUTPUT_VARIABLE dep_targets)
  list(TRANSFORM L_PRIVATE_DEPS PREPEND ember_ OUTPUT_VARIABLE private_targets)
  file(RELATIVE_PATH dir ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  get_property(known GLOBAL PROPERTY EMBER_LAYERS)
  if(layer IN_LIST known)
    get_property(other GLOBAL PROPERTY EMBER_LAYER_${layer}_DIR)
    message(FATAL_ERROR "ember_layer(${layer}) in ${dir}: already declared in ${other}")
  endif()
  if(L_EXECUTABLE)
    add_executable(${L_EXECUTABLE} ${L_SOURCES})
    target_link_libraries(${L_EXECUTABLE} PRIVATE ${dep_targets} ${private_targets} ${L_LIBS})
    set(target ${L_EXECUTABLE})
  else()
    set(target ember_${layer})
    add_library(${target} ${L_SOURCES})
    set(root ${EMBER_INCLUDE_ROOTS}/${layer})
    _ember_symlink(${CMAKE_CURRENT_SOURCE_DIR} ${root}/${layer})
    foreach(path IN LISTS L_EXPORTS)
      if(NOT EXISTS ${PROJECT_SOURCE_DIR}/include/${path})
        message(FATAL_ERROR "ember_layer(${layer}): EXPORTS ${path}: no include/${path}")
      endif()
      _ember_symlink(${PROJECT_SOURCE_DIR}/include/${path} ${root}/${path})
    endforeach()
    target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${root}>)
    target_link_libraries(${target} PUBLIC ${dep_targets} ${L_LIBS} PRIVATE ${private_targets})
  endif()
  set_property(GLOBAL APPEND PROPERTY EMBER_LAYERS ${layer})
  set_property(GLOBAL PROPERTY EMBER_LAYER_${layer}_TARGET ${target})
  set_property(GLOBAL PROPERTY EMBER_LAYER_${layer}_DIR ${dir})
  set_property(GLOBAL PROPERTY EMBER_LAYER_${layer}_EXPORTS ${L_EXPORTS})
endfunction()

# The ember_<layer> targets among `libs` (a link-libraries property), as layer names.
function(_ember_layer_links libs out)
  get_property(layers GLOBAL PROPERTY EMBER_LAYERS)
  set(found "")
  foreach(lib IN LISTS libs)
    string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" lib "${lib}")
    string(REGEX REPLACE "^ember_" "" name "${lib}")
    if(NOT name STREQUAL lib AND name IN_LIST layers)
      list(APPEND found ${name})
    endif()
  endforeach()
  list(REMOVE_DUPLICATES found)
  set(${out} ${found} PARENT_SCOPE)
endfunction()

function(_ember_json_list out)
  set(items "")
  foreach(item IN LISTS ARGN)
    list(APPEND items "\"${item}\"")
  endforeach()
  list(JOIN items ", " joined)
  set(${out} "[${joined}]" PARENT_SCOPE)
endfunction()

# layers.json: per layer its directory, the layers it links (all, and the PUBLIC ones
# that pass visibility on), and the include prefixes it exports -> source paths.
function(ember_write_layer_graph file)
  get_property(layers GLOBAL PROPERTY EMBER_LAYERS)
  set(entries "")
  foreach(layer IN LISTS layers)
    get_property(target GLOBAL PROPERTY EMBER_LAYER_${layer}_TARGET)
    get_property(dir GLOBAL PROPERTY EMBER_LAYER_${layer}_DIR)
    get_property(exports GLOBAL PROPERTY EMBER_LAYER_${layer}_EXPORTS)
    get_target_property(links ${target} LINK_LIBRARIES)
    get_target_property(type ${target} TYPE)
    set(interface "")
    if(NOT type STREQUAL "EXECUTABLE")
      get_target_property(interface ${target} INTERFACE_LINK_LIBRARIES)
      string(REGEX REPLACE "\\$<LINK_ONLY:[^>]*>" "" interface "${interface}")
    endif()
    _ember_layer_links("${links}" deps)
    _ember_layer_links("${interface}" public_deps)
    _ember_json_list(deps_json ${deps})
    _ember_json_list(public_json ${public_deps})
    set(export_items "")
    if(NOT type STREQUAL "EXECUTABLE")
      list(APPEND export_items "\"${layer}\": \"${dir}\"")
    endif()
    foreach(path IN LISTS exports)
      list(APPEND export_items "\"${path}\": \"include/${path}\"")
    endforeach()
    list(JOIN export_items ", " exports_json)
    string(CONCAT entry "    \"${layer}\": {\"dir\": \"${dir}\", \"target\": \"${target}\",\n"
                        "      \"deps\": ${deps_json}, \"public_deps\": ${public_json},\n"
                        "      \"exports\": {${exports_json}}}")
    list(APPEND entries "${entry}")
  endforeach()
  list(JOIN entries ",\n" body)
  file(CONFIGURE OUTPUT ${file} CONTENT "{\n  \"layers\": {\n${body}\n  }\n}\n" @ONLY)
endfunction()
