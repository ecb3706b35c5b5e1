# Fails when docs/rules.md differs from what the rule catalogue generates.
#   cmake -DCAPCTL=path/to/capctl -DDOC=path/to/docs/rules.md -P check-rules-doc.cmake
# ctest runs it as docs.rules_md_is_current; `make docs` regenerates the file.
if(NOT DEFINED CAPCTL OR NOT DEFINED DOC)
  message(FATAL_ERROR "usage: cmake -DCAPCTL=<capctl> -DDOC=<docs/rules.md> -P ${CMAKE_CURRENT_LIST_FILE}")
endif()

execute_process(
  COMMAND "${CAPCTL}" rules --markdown
  OUTPUT_VARIABLE generated
  ERROR_VARIABLE errors
  RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "'${CAPCTL} rules --markdown' failed (${status}):\n${errors}")
endif()

if(NOT EXISTS "${DOC}")
  message(FATAL_ERROR "${DOC} does not exist.\ndocs/rules.md is out of date: run make docs")
endif()
file(READ "${DOC}" current)

if(NOT current STREQUAL generated)
  # Show where they differ, when diff is at hand; the verdict does not depend on it.
  set(fresh "${CMAKE_CURRENT_BINARY_DIR}/rules.md.generated")
  file(WRITE "${fresh}" "${generated}")
  find_program(DIFF diff)
  if(DIFF)
    execute_process(COMMAND "${DIFF}" -u "${DOC}" "${fresh}" OUTPUT_VARIABLE delta)
    string(LENGTH "${delta}" delta_length)
    if(delta_length GREATER 4000)
      string(SUBSTRING "${delta}" 0 4000 delta)
      string(APPEND delta "\n...")
    endif()
    message("${delta}")
  endif()
  file(REMOVE "${fresh}")
  message(FATAL_ERROR "docs/rules.md is out of date: run make docs")
endif()
