/* kernels.h -- the still__kernels table (placeholder). */
#ifndef STILL_KERNELS_H
#define STILL_KERNELS_H
#endif
