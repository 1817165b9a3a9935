/* io.h -- .npy and safetensors (placeholder). */
#ifndef STILL_IO_H
#define STILL_IO_H
#endif
