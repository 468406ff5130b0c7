/*
 * An NVML client written against nvml.h's C ABI only: it dlopens the library named on its
 * command line (no linking, no headers from the simulator) and prints what it finds, one fact
 * per line, for tests/c_client.rs to compare with the topology.
 *
 *   nvml_client LIB enumerate   every GPU, MIG device, GPU instance and compute instance
 *   nvml_client LIB errors      return codes of misuse: bad handles, short buffers, MIG calls
 *                               on a GPU without MIG, calls before init and after shutdown
 *   nvml_client LIB create GI CI   create a GPU instance of profile GI on GPU 0 and a compute
 *                               instance of profile CI in it; print where they went
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct nvmlGpuInstance_st *nvmlGpuInstance_t;
typedef struct nvmlComputeInstance_st *nvmlComputeInstance_t;

typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

typedef struct {
    unsigned int multiprocessorCount, sharedCopyEngineCount, sharedDecoderCount, sharedEncoderCount,
        sharedJpegCount, sharedOfaCount, gpuInstanceSliceCount, computeInstanceSliceCount;
    unsigned long long memorySizeMB;
} nvmlDeviceAttributes_t;

typedef struct {
    unsigned int id, isP2pSupported, sliceCount, instanceCount, multiprocessorCount, copyEngineCount,
        decoderCount, encoderCount, jpegCount, ofaCount;
    unsigned long long memorySizeMB;
} nvmlGpuInstanceProfileInfo_t;

typedef struct {
    unsigned int version, id, isP2pSupported, sliceCount, instanceCount, multiprocessorCount, copyEngineCount,
        decoderCount, encoderCount, jpegCount, ofaCount;
    unsigned long long memorySizeMB;
    char name[96];
} nvmlGpuInstanceProfileInfo_v2_t;

typedef struct {
    unsigned int start, size;
} nvmlPlacement_t;

typedef struct {
    nvmlDevice_t device;
    unsigned int id, profileId;
    nvmlPlacement_t placement;
} nvmlGpuInstanceInfo_t;

typedef struct {
    unsigned int id, sliceCount, instanceCount, multiprocessorCount, sharedCopyEngineCount,
        sharedDecoderCount, sharedEncoderCount, sharedJpegCount, sharedOfaCount;
} nvmlComputeInstanceProfileInfo_t;

typedef struct {
    unsigned int version, id, sliceCount, instanceCount, multiprocessorCount, sharedCopyEngineCount,
        sharedDecoderCount, sharedEncoderCount, sharedJpegCount, sharedOfaCount;
    char name[96];
} nvmlComputeInstanceProfileInfo_v2_t;

typedef struct {
    nvmlDevice_t device;
    nvmlGpuInstance_t gpuInstance;
    unsigned int id, profileId;
    nvmlPlacement_t placement;
} nvmlComputeInstanceInfo_t;

#define STRUCT_VERSION(type, ver) ((unsigned int)(sizeof(type) | ((ver) << 24U)))
#define GPU_INSTANCE_PROFILE_COUNT 13
#define COMPUTE_INSTANCE_PROFILE_COUNT 8
#define NOT_SUPPORTED 3
#define NOT_FOUND 6

static void *lib;

static void *sym(const char *name) {
    void *p = dlsym(lib, name);
    if (!p) {
        printf("missing %s\n", name);
        exit(3);
    }
    return p;
}

/* Declare a function pointer named like the NVML function and resolve it. */
#define FN(ret, name, args) ret(*name) args = (ret(*) args)sym(#name)

static const char *ok(int same) { return same ? "ok" : "MISMATCH"; }

static void lower(char *s) {
    for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

static int enumerate(void) {
    FN(nvmlReturn_t, nvmlInit_v2, (void));
    FN(nvmlReturn_t, nvmlShutdown, (void));
    FN(const char *, nvmlErrorString, (nvmlReturn_t));
    FN(nvmlReturn_t, nvmlSystemGetDriverVersion, (char *, unsigned int));
    FN(nvmlReturn_t, nvmlSystemGetNVMLVersion, (char *, unsigned int));
    FN(nvmlReturn_t, nvmlSystemGetCudaDriverVersion, (int *));
    FN(nvmlReturn_t, nvmlSystemGetCudaDriverVersion_v2, (int *));
    FN(nvmlReturn_t, nvmlDeviceGetCount_v2, (unsigned int *));
    FN(nvmlReturn_t, nvmlDeviceGetHandleByIndex_v2, (unsigned int, nvmlDevice_t *));
    FN(nvmlReturn_t, nvmlDeviceGetHandleByUUID, (const char *, nvmlDevice_t *));
    FN(nvmlReturn_t, nvmlDeviceGetHandleByPciBusId_v2, (const char *, nvmlDevice_t *));
    FN(nvmlReturn_t, nvmlDeviceGetIndex, (nvmlDevice_t, unsigned int *));
    FN(nvmlReturn_t, nvmlDeviceGetUUID, (nvmlDevice_t, char *, unsigned int));
    FN(nvmlReturn_t, nvmlDeviceGetName, (nvmlDevice_t, char *, unsigned int));
    FN(nvmlReturn_t, nvmlDeviceGetBrand, (nvmlDevice_t, int *));
    FN(nvmlReturn_t, nvmlDeviceGetMinorNumber, (nvmlDevice_t, unsigned int *));
    FN(nvmlReturn_t, nvmlDeviceGetPciInfo_v3, (nvmlDevice_t, nvmlPciInfo_t *));
    FN(nvmlReturn_t, nvmlDeviceGetMemoryInfo, (nvmlDevice_t, nvmlMemory_t *));
    FN(nvmlReturn_t, nvmlDeviceGetMemoryInfo_v2, (nvmlDevice_t, nvmlMemory_v2_t *));
    FN(nvmlReturn_t, nvmlDeviceGetArchitecture, (nvmlDevice_t, unsigned int *));
    FN(nvmlReturn_t, nvmlDeviceGetCudaComputeCapability, (nvmlDevice_t, int *, int *));
    FN(nvmlReturn_t, nvmlDeviceGetMigMode, (nvmlDevice_t, unsigned int *, unsigned int *));
    FN(nvmlReturn_t, nvmlDeviceGetMaxMigDeviceCount, (nvmlDevice_t, unsigned int *));
    FN(nvmlReturn_t, nvmlDeviceGetMigDeviceHandleByIndex, (nvmlDevice_t, unsigned int, nvmlDevice_t *));
    FN(nvmlReturn_t, nvmlDeviceGetDeviceHandleFromMigDeviceHandle, (nvmlDevice_t, nvmlDevice_t *));
    FN(nvmlReturn_t, nvmlDeviceIsMigDeviceHandle, (nvmlDevice_t, unsigned int *));
    FN(nvmlReturn_t, nvmlDeviceGetGpuInstanceId, (nvmlDevice_t, unsigned int *));
    FN(nvmlReturn_t, nvmlDeviceGetComputeInstanceId, (nvmlDevice_t, unsigned int *));
    FN(nvmlReturn_t, nvmlDeviceGetAttributes_v2, (nvmlDevice_t, nvmlDeviceAttributes_t *));
    FN(nvmlReturn_t, nvmlDeviceGetGpuInstanceProfileInfo, (nvmlDevice_t, unsigned int, nvmlGpuInstanceProfileInfo_t *));
    FN(nvmlReturn_t, nvmlDeviceGetGpuInstanceProfileInfoV, (nvmlDevice_t, unsigned int, nvmlGpuInstanceProfileInfo_v2_t *));
    FN(nvmlReturn_t, nvmlDeviceGetGpuInstances, (nvmlDevice_t, unsigned int, nvmlGpuInstance_t *, unsigned int *));
    FN(nvmlReturn_t, nvmlDeviceGetGpuInstanceById, (nvmlDevice_t, unsigned int, nvmlGpuInstance_t *));
    FN(nvmlReturn_t, nvmlGpuInstanceGetInfo, (nvmlGpuInstance_t, nvmlGpuInstanceInfo_t *));
    FN(nvmlReturn_t, nvmlGpuInstanceGetComputeInstanceProfileInfo,
       (nvmlGpuInstance_t, unsigned int, unsigned int, nvmlComputeInstanceProfileInfo_t *));
    FN(nvmlReturn_t, nvmlGpuInstanceGetComputeInstanceProfileInfoV,
       (nvmlGpuInstance_t, unsigned int, unsigned int, nvmlComputeInstanceProfileInfo_v2_t *));
    FN(nvmlReturn_t, nvmlGpuInstanceGetComputeInstances,
       (nvmlGpuInstance_t, unsigned int, nvmlComputeInstance_t *, unsigned int *));
    FN(nvmlReturn_t, nvmlGpuInstanceGetComputeInstanceById, (nvmlGpuInstance_t, unsigned int, nvmlComputeInstance_t *));
    FN(nvmlReturn_t, nvmlComputeInstanceGetInfo_v2, (nvmlComputeInstance_t, nvmlComputeInstanceInfo_t *));

    nvmlReturn_t r = nvmlInit_v2();
    printf("init %d %s\n", r, nvmlErrorString(r));
    if (r != 0) return 0;

    char buf[96];
    int cuda = 0, cuda2 = 0;
    nvmlSystemGetDriverVersion(buf, sizeof buf);
    printf("driver %s\n", buf);
    nvmlSystemGetNVMLVersion(buf, sizeof buf);
    printf("nvml %s\n", buf);
    nvmlSystemGetCudaDriverVersion(&cuda);
    nvmlSystemGetCudaDriverVersion_v2(&cuda2);
    printf("cuda %d %d\n", cuda, cuda2);

    unsigned int count = 0;
    r = nvmlDeviceGetCount_v2(&count);
    printf("count %d %u\n", r, count);
    for (unsigned int i = 0; i < count; i++) {
        nvmlDevice_t dev = NULL, again = NULL;
        if ((r = nvmlDeviceGetHandleByIndex_v2(i, &dev)) != 0) {
            printf("gpu %u handle error %d\n", i, r);
            continue;
        }
        char uuid[96], name[96];
        unsigned int index = 99, minor = 99, cur = 9, pend = 9, arch = 0, maxmig = 99;
        int brand = 0, ccmaj = 0, ccmin = 0;
        nvmlPciInfo_t pci;
        nvmlMemory_t mem;
        nvmlMemory_v2_t mem2;
        memset(&pci, 0, sizeof pci);
        mem2.version = STRUCT_VERSION(nvmlMemory_v2_t, 2);
        nvmlDeviceGetIndex(dev, &index);
        nvmlDeviceGetUUID(dev, uuid, sizeof uuid);
        nvmlDeviceGetName(dev, name, sizeof name);
        nvmlDeviceGetBrand(dev, &brand);
        nvmlDeviceGetMinorNumber(dev, &minor);
        nvmlDeviceGetPciInfo_v3(dev, &pci);
        nvmlDeviceGetMemoryInfo(dev, &mem);
        r = nvmlDeviceGetMemoryInfo_v2(dev, &mem2);
        nvmlDeviceGetArchitecture(dev, &arch);
        nvmlDeviceGetCudaComputeCapability(dev, &ccmaj, &ccmin);
        nvmlDeviceGetMigMode(dev, &cur, &pend);
        nvmlDeviceGetMaxMigDeviceCount(dev, &maxmig);

        int byuuid = nvmlDeviceGetHandleByUUID(uuid, &again) == 0 && again == dev;
        /* Lower case with the 4-digit domain: real NVML accepts both. */
        char legacy[32];
        snprintf(legacy, sizeof legacy, "%s", pci.busIdLegacy);
        lower(legacy);
        again = NULL;
        int bypci = nvmlDeviceGetHandleByPciBusId_v2(legacy, &again) == 0 && again == dev;
        again = NULL;
        int bypci8 = nvmlDeviceGetHandleByPciBusId_v2(pci.busId, &again) == 0 && again == dev;

        printf("gpu %u index=%u uuid=%s name=%s brand=%d minor=%u pci=%s legacy=%s domain=%u bus=%u dev=%u "
               "pciid=%08x subsys=%08x mig=%u/%u mem=%llu/%llu mem2=%d/%llu arch=%u cc=%d.%d maxmig=%u "
               "byuuid=%s bypci=%s/%s\n",
               i, index, uuid, name, brand, minor, pci.busId, pci.busIdLegacy, pci.domain, pci.bus, pci.device,
               pci.pciDeviceId, pci.pciSubSystemId, cur, pend, mem.total, mem.free, r, mem2.total, arch, ccmaj,
               ccmin, maxmig, ok(byuuid), ok(bypci), ok(bypci8));

        for (unsigned int m = 0; m < maxmig; m++) {
            nvmlDevice_t mig = NULL, parent = NULL;
            r = nvmlDeviceGetMigDeviceHandleByIndex(dev, m, &mig);
            if (r == NOT_FOUND) continue;
            if (r != 0) {
                printf("mig %u %u error %d\n", i, m, r);
                continue;
            }
            unsigned int gi = 99, ci = 99, ismig = 9;
            nvmlDeviceAttributes_t at;
            memset(&at, 0, sizeof at);
            nvmlDeviceGetUUID(mig, uuid, sizeof uuid);
            nvmlDeviceGetName(mig, name, sizeof name);
            nvmlDeviceGetMemoryInfo(mig, &mem);
            nvmlDeviceGetGpuInstanceId(mig, &gi);
            nvmlDeviceGetComputeInstanceId(mig, &ci);
            nvmlDeviceIsMigDeviceHandle(mig, &ismig);
            nvmlDeviceGetAttributes_v2(mig, &at);
            nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig, &parent);
            again = NULL;
            byuuid = nvmlDeviceGetHandleByUUID(uuid, &again) == 0 && again == mig;
            printf("mig %u %u uuid=%s name=%s gi=%u ci=%u mem=%llu ismig=%u parent=%s byuuid=%s "
                   "attrs=%u/%u/%u/%u/%llu\n",
                   i, m, uuid, name, gi, ci, mem.total, ismig, ok(parent == dev), ok(byuuid),
                   at.multiprocessorCount, at.gpuInstanceSliceCount, at.computeInstanceSliceCount,
                   at.sharedCopyEngineCount, at.memorySizeMB);
        }

        for (unsigned int p = 0; p < GPU_INSTANCE_PROFILE_COUNT; p++) {
            nvmlGpuInstanceProfileInfo_t pi;
            nvmlGpuInstanceProfileInfo_v2_t pv;
            r = nvmlDeviceGetGpuInstanceProfileInfo(dev, p, &pi);
            if (r == NOT_SUPPORTED) continue;
            if (r != 0) {
                printf("giprofile %u %u error %d\n", i, p, r);
                continue;
            }
            memset(&pv, 0, sizeof pv);
            pv.version = STRUCT_VERSION(nvmlGpuInstanceProfileInfo_v2_t, 2);
            r = nvmlDeviceGetGpuInstanceProfileInfoV(dev, p, &pv);
            nvmlGpuInstance_t *gis = calloc(pi.instanceCount, sizeof *gis);
            unsigned int n = 0;
            nvmlDeviceGetGpuInstances(dev, p, gis, &n);
            for (unsigned int k = 0; k < n; k++) {
                nvmlGpuInstanceInfo_t info;
                nvmlGpuInstance_t byid = NULL;
                nvmlGpuInstanceGetInfo(gis[k], &info);
                nvmlDeviceGetGpuInstanceById(dev, info.id, &byid);
                printf("gi %u id=%u profile=%u start=%u size=%u pname=%s pslices=%u pcount=%u pmem=%llu "
                       "parent=%s byid=%s\n",
                       i, info.id, info.profileId, info.placement.start, info.placement.size, pv.name,
                       pi.sliceCount, pi.instanceCount, pi.memorySizeMB, ok(info.device == dev),
                       ok(byid == gis[k]));
                for (unsigned int cp = 0; cp < COMPUTE_INSTANCE_PROFILE_COUNT; cp++) {
                    nvmlComputeInstanceProfileInfo_t ci;
                    nvmlComputeInstanceProfileInfo_v2_t cv;
                    r = nvmlGpuInstanceGetComputeInstanceProfileInfo(gis[k], cp, 0, &ci);
                    if (r == NOT_SUPPORTED) continue;
                    if (r != 0) {
                        printf("ciprofile %u %u error %d\n", i, cp, r);
                        continue;
                    }
                    memset(&cv, 0, sizeof cv);
                    cv.version = STRUCT_VERSION(nvmlComputeInstanceProfileInfo_v2_t, 2);
                    nvmlGpuInstanceGetComputeInstanceProfileInfoV(gis[k], cp, 0, &cv);
                    nvmlComputeInstance_t *cis = calloc(ci.instanceCount, sizeof *cis);
                    unsigned int cn = 0;
                    nvmlGpuInstanceGetComputeInstances(gis[k], cp, cis, &cn);
                    for (unsigned int c = 0; c < cn; c++) {
                        nvmlComputeInstanceInfo_t cinfo;
                        nvmlComputeInstance_t cbyid = NULL;
                        nvmlComputeInstanceGetInfo_v2(cis[c], &cinfo);
                        nvmlGpuInstanceGetComputeInstanceById(gis[k], cinfo.id, &cbyid);
                        printf("ci %u gi=%u id=%u profile=%u start=%u size=%u pname=%s pslices=%u pcount=%u "
                               "parent=%s gi_handle=%s byid=%s\n",
                               i, info.id, cinfo.id, cinfo.profileId, cinfo.placement.start, cinfo.placement.size,
                               cv.name, ci.sliceCount, ci.instanceCount, ok(cinfo.device == dev),
                               ok(cinfo.gpuInstance == gis[k]), ok(cbyid == cis[c]));
                    }
                    free(cis);
                }
            }
            free(gis);
        }
    }
    printf("shutdown %d\n", nvmlShutdown());
    return 0;
}

static int errors(void) {
    FN(nvmlReturn_t, nvmlInit_v2, (void));
    FN(nvmlReturn_t, nvmlInit, (void));
    FN(nvmlReturn_t, nvmlShutdown, (void));
    FN(nvmlReturn_t, nvmlDeviceGetCount_v2, (unsigned int *));
    FN(nvmlReturn_t, nvmlDeviceGetHandleByIndex_v2, (unsigned int, nvmlDevice_t *));
    FN(nvmlReturn_t, nvmlDeviceGetHandleByUUID, (const char *, nvmlDevice_t *));
    FN(nvmlReturn_t, nvmlDeviceGetUUID, (nvmlDevice_t, char *, unsigned int));
    FN(nvmlReturn_t, nvmlDeviceGetMinorNumber, (nvmlDevice_t, unsigned int *));
    FN(nvmlReturn_t, nvmlDeviceGetPciInfo_v3, (nvmlDevice_t, nvmlPciInfo_t *));
    FN(nvmlReturn_t, nvmlDeviceGetMigDeviceHandleByIndex, (nvmlDevice_t, unsigned int, nvmlDevice_t *));
    FN(nvmlReturn_t, nvmlDeviceGetGpuInstances, (nvmlDevice_t, unsigned int, nvmlGpuInstance_t *, unsigned int *));
    FN(nvmlReturn_t, nvmlDeviceGetGpuInstanceProfileInfoV, (nvmlDevice_t, unsigned int, nvmlGpuInstanceProfileInfo_v2_t *));
    FN(nvmlReturn_t, nvmlDeviceGetGpuInstanceProfileInfo, (nvmlDevice_t, unsigned int, nvmlGpuInstanceProfileInfo_t *));
    FN(nvmlReturn_t, nvmlDeviceGetGpuInstanceById, (nvmlDevice_t, unsigned int, nvmlGpuInstance_t *));
    FN(nvmlReturn_t, nvmlGpuInstanceGetInfo, (nvmlGpuInstance_t, nvmlGpuInstanceInfo_t *));
    FN(nvmlReturn_t, nvmlDeviceGetGpuInstanceId, (nvmlDevice_t, unsigned int *));

    unsigned int count = 0, u = 0;
    char buf[96];
    int local = 0;
    nvmlDevice_t gpu0 = NULL, gpu1 = NULL, mig = NULL;
    nvmlGpuInstance_t gi = NULL;
    nvmlPciInfo_t pci;
    nvmlGpuInstanceProfileInfo_v2_t pv;
    nvmlGpuInstanceProfileInfo_t pi;

    printf("before_init %d\n", nvmlDeviceGetCount_v2(&count));
    printf("init %d\n", nvmlInit_v2());
    nvmlDeviceGetHandleByIndex_v2(0, &gpu0);
    nvmlDeviceGetHandleByIndex_v2(1, &gpu1);
    nvmlDeviceGetMigDeviceHandleByIndex(gpu0, 0, &mig);
    nvmlDeviceGetGpuInstanceById(gpu0, 1, &gi);
    printf("null_handle %d\n", nvmlDeviceGetUUID(NULL, buf, sizeof buf));
    printf("bogus_handle %d\n", nvmlDeviceGetUUID((nvmlDevice_t)&local, buf, sizeof buf));
    printf("gi_as_device %d\n", nvmlDeviceGetUUID((nvmlDevice_t)gi, buf, sizeof buf));
    printf("device_as_gi %d\n", nvmlGpuInstanceGetInfo((nvmlGpuInstance_t)gpu0, NULL));
    printf("null_out %d\n", nvmlDeviceGetCount_v2(NULL));
    printf("short_buffer %d\n", nvmlDeviceGetUUID(gpu0, buf, 10));
    printf("index_out_of_range %d\n", nvmlDeviceGetHandleByIndex_v2(2, &gpu0));
    printf("unknown_uuid %d\n", nvmlDeviceGetHandleByUUID("GPU-00000000-0000-0000-0000-000000000000", &gpu0));
    printf("nomig_mig_by_index %d\n", nvmlDeviceGetMigDeviceHandleByIndex(gpu1, 0, &mig));
    printf("nomig_gpu_instances %d\n", nvmlDeviceGetGpuInstances(gpu1, 0, &gi, &u));
    printf("nomig_profile_info %d\n", nvmlDeviceGetGpuInstanceProfileInfo(gpu1, 0, &pi));
    printf("nomig_gi_id %d\n", nvmlDeviceGetGpuInstanceId(gpu1, &u));
    printf("mig_minor %d\n", nvmlDeviceGetMinorNumber(mig, &u));
    printf("mig_pci %d\n", nvmlDeviceGetPciInfo_v3(mig, &pci));
    printf("mig_as_parent %d\n", nvmlDeviceGetMigDeviceHandleByIndex(mig, 0, &mig));
    printf("profile_out_of_range %d\n", nvmlDeviceGetGpuInstanceProfileInfo(gpu0, 13, &pi));
    memset(&pv, 0, sizeof pv);
    printf("bad_version %d\n", nvmlDeviceGetGpuInstanceProfileInfoV(gpu0, 0, &pv));
    printf("init_again %d\n", nvmlInit());
    printf("shutdown %d\n", nvmlShutdown());
    printf("still_initialized %d\n", nvmlDeviceGetUUID(gpu0, buf, sizeof buf));
    printf("shutdown %d\n", nvmlShutdown());
    printf("stale_handle %d\n", nvmlDeviceGetUUID(gpu0, buf, sizeof buf));
    printf("shutdown_extra %d\n", nvmlShutdown());
    return 0;
}

static int create(unsigned int gi_profile, unsigned int ci_profile) {
    FN(nvmlReturn_t, nvmlInit_v2, (void));
    FN(nvmlReturn_t, nvmlShutdown, (void));
    FN(nvmlReturn_t, nvmlDeviceGetHandleByIndex_v2, (unsigned int, nvmlDevice_t *));
    FN(nvmlReturn_t, nvmlDeviceGetGpuInstanceRemainingCapacity, (nvmlDevice_t, unsigned int, unsigned int *));
    FN(nvmlReturn_t, nvmlDeviceCreateGpuInstance, (nvmlDevice_t, unsigned int, nvmlGpuInstance_t *));
    FN(nvmlReturn_t, nvmlGpuInstanceCreateComputeInstance,
       (nvmlGpuInstance_t, unsigned int, nvmlComputeInstance_t *));
    FN(nvmlReturn_t, nvmlGpuInstanceGetInfo, (nvmlGpuInstance_t, nvmlGpuInstanceInfo_t *));
    FN(nvmlReturn_t, nvmlComputeInstanceGetInfo_v2, (nvmlComputeInstance_t, nvmlComputeInstanceInfo_t *));
    nvmlDevice_t gpu;
    nvmlGpuInstance_t gi;
    nvmlComputeInstance_t ci;
    nvmlGpuInstanceInfo_t gi_info;
    nvmlComputeInstanceInfo_t ci_info;
    unsigned int left = 0;
    if (nvmlInit_v2() != 0 || nvmlDeviceGetHandleByIndex_v2(0, &gpu) != 0) return 4;
    if (nvmlDeviceGetGpuInstanceRemainingCapacity(gpu, gi_profile, &left) != 0) return 5;
    nvmlReturn_t rc = nvmlDeviceCreateGpuInstance(gpu, gi_profile, &gi);
    if (rc != 0) {
        printf("create_gi %d left=%u\n", rc, left);
        return 0;
    }
    if (nvmlGpuInstanceCreateComputeInstance(gi, ci_profile, &ci) != 0) return 6;
    if (nvmlGpuInstanceGetInfo(gi, &gi_info) != 0 || nvmlComputeInstanceGetInfo_v2(ci, &ci_info) != 0)
        return 7;
    printf("created gi=%u start=%u size=%u ci=%u left_before=%u\n", gi_info.id, gi_info.placement.start,
           gi_info.placement.size, ci_info.id, left);
    return nvmlShutdown();
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[2], "create") == 0) {
        lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!lib) return 3;
        return create((unsigned int)atoi(argv[3]), (unsigned int)atoi(argv[4]));
    }
    if (argc != 3) {
        fprintf(stderr, "usage: %s LIBRARY enumerate|errors|create GI CI\n", argv[0]);
        return 2;
    }
    lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        printf("dlopen %s\n", dlerror());
        return 3;
    }
    if (strcmp(argv[2], "enumerate") == 0) return enumerate();
    if (strcmp(argv[2], "errors") == 0) return errors();
    return 2;
}
