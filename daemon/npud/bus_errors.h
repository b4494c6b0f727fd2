/* SPDX-License-Identifier: MIT */
/* The named errors of org.npud.Inference1 (documented in org.npud.Inference1.xml). */
#pragma once

#include <systemd/sd-bus.h>

#define NPUD_ERROR_INVALID_ARGUMENT "org.npud.Inference1.Error.InvalidArgument"
#define NPUD_ERROR_INVALID_UTF8 "org.npud.Inference1.Error.InvalidUTF8"
#define NPUD_ERROR_PROMPT_TOO_LONG "org.npud.Inference1.Error.PromptTooLong"
#define NPUD_ERROR_NO_SUCH_MODEL "org.npud.Inference1.Error.NoSuchModel"
#define NPUD_ERROR_NO_SUCH_DEVICE "org.npud.Inference1.Error.NoSuchDevice"
#define NPUD_ERROR_BAD_MODEL "org.npud.Inference1.Error.BadModel"
#define NPUD_ERROR_BUSY "org.npud.Inference1.Error.Busy"
#define NPUD_ERROR_REQUEST_TOO_LARGE "org.npud.Inference1.Error.RequestTooLarge"
#define NPUD_ERROR_LIMIT_EXCEEDED "org.npud.Inference1.Error.LimitExceeded"
#define NPUD_ERROR_ACCESS_DENIED "org.npud.Inference1.Error.AccessDenied"
#define NPUD_ERROR_CANCELLED "org.npud.Inference1.Error.Cancelled"
#define NPUD_ERROR_FINISHED "org.npud.Inference1.Error.Finished"
#define NPUD_ERROR_SHUTTING_DOWN "org.npud.Inference1.Error.ShuttingDown"
#define NPUD_ERROR_FAILED "org.npud.Inference1.Error.Failed"
