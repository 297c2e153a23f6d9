// The Status type lives in the public API (include/ember/status.h); layers include it here.
#pragma once

#include "ember/status.h"
