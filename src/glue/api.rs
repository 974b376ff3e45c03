//! Access to the server's module API function table.
//!
//! The table is filled by `RedisModule_Init`; `check_required` refuses to load on a server that
//! lacks a call we use, so the `rm!` lookups after that point cannot miss.

/// The server's implementation of `RedisModule_<name>`.
macro_rules! rm {
    ($name:ident) => {{
        // SAFETY: the table is written once, by RedisModule_Init, before any of our code runs.
        #[allow(unused_unsafe)]
        let function = match unsafe { redis_module::raw::$name } {
            Some(function) => function,
            None => $crate::glue::api::missing(stringify!($name)),
        };
        function
    }};
}
pub(crate) use rm;

/// Unreachable after `check_required` passed; a panic here is caught at the entry point.
#[cold]
pub fn missing(name: &str) -> ! {
    panic!("{name} is missing from this server's module API")
}

/// The names of required calls this server lacks (empty when all are there).
pub fn missing_required() -> Vec<&'static str> {
    use redis_module::raw;
    // SAFETY: reads of function pointers written once by RedisModule_Init.
    let present = unsafe {
        [
            ("StringPtrLen", { raw::RedisModule_StringPtrLen }.is_some()),
            ("OpenKey", { raw::RedisModule_OpenKey }.is_some()),
            ("CloseKey", { raw::RedisModule_CloseKey }.is_some()),
            ("KeyType", { raw::RedisModule_KeyType }.is_some()),
            ("DeleteKey", { raw::RedisModule_DeleteKey }.is_some()),
            (
                "ModuleTypeGetType",
                { raw::RedisModule_ModuleTypeGetType }.is_some(),
            ),
            (
                "ModuleTypeGetValue",
                { raw::RedisModule_ModuleTypeGetValue }.is_some(),
            ),
            (
                "ModuleTypeSetValue",
                { raw::RedisModule_ModuleTypeSetValue }.is_some(),
            ),
            ("SetAbsExpire", { raw::RedisModule_SetAbsExpire }.is_some()),
            (
                "SignalModifiedKey",
                { raw::RedisModule_SignalModifiedKey }.is_some(),
            ),
            (
                "NotifyKeyspaceEvent",
                { raw::RedisModule_NotifyKeyspaceEvent }.is_some(),
            ),
            ("Milliseconds", { raw::RedisModule_Milliseconds }.is_some()),
            (
                "GetDbIdFromIO",
                { raw::RedisModule_GetDbIdFromIO }.is_some(),
            ),
            (
                "GetClientInfoById",
                { raw::RedisModule_GetClientInfoById }.is_some(),
            ),
            (
                "GetKeyNameFromIO",
                { raw::RedisModule_GetKeyNameFromIO }.is_some(),
            ),
            (
                "GetContextFlags",
                { raw::RedisModule_GetContextFlags }.is_some(),
            ),
            ("Replicate", { raw::RedisModule_Replicate }.is_some()),
            ("EmitAOF", { raw::RedisModule_EmitAOF }.is_some()),
            (
                "ReplyWithLongLong",
                { raw::RedisModule_ReplyWithLongLong }.is_some(),
            ),
            (
                "ReplyWithNull",
                { raw::RedisModule_ReplyWithNull }.is_some(),
            ),
            (
                "ReplyWithError",
                { raw::RedisModule_ReplyWithError }.is_some(),
            ),
            ("ReplyWithMap", { raw::RedisModule_ReplyWithMap }.is_some()),
            (
                "ReplyWithSimpleString",
                { raw::RedisModule_ReplyWithSimpleString }.is_some(),
            ),
            (
                "ReplyWithStringBuffer",
                { raw::RedisModule_ReplyWithStringBuffer }.is_some(),
            ),
            (
                "SaveStringBuffer",
                { raw::RedisModule_SaveStringBuffer }.is_some(),
            ),
            (
                "LoadStringBuffer",
                { raw::RedisModule_LoadStringBuffer }.is_some(),
            ),
            ("SaveUnsigned", { raw::RedisModule_SaveUnsigned }.is_some()),
            ("LoadUnsigned", { raw::RedisModule_LoadUnsigned }.is_some()),
            ("IsIOError", { raw::RedisModule_IsIOError }.is_some()),
            ("Free", { raw::RedisModule_Free }.is_some()),
            (
                "DigestAddStringBuffer",
                { raw::RedisModule_DigestAddStringBuffer }.is_some(),
            ),
            (
                "DigestAddLongLong",
                { raw::RedisModule_DigestAddLongLong }.is_some(),
            ),
            (
                "DigestEndSequence",
                { raw::RedisModule_DigestEndSequence }.is_some(),
            ),
            (
                "CreateCommand",
                { raw::RedisModule_CreateCommand }.is_some(),
            ),
            ("GetCommand", { raw::RedisModule_GetCommand }.is_some()),
            (
                "SetModuleOptions",
                { raw::RedisModule_SetModuleOptions }.is_some(),
            ),
            ("CreateString", { raw::RedisModule_CreateString }.is_some()),
            ("FreeString", { raw::RedisModule_FreeString }.is_some()),
            ("Log", { raw::RedisModule_Log }.is_some()),
            (
                "CommandFilterArgReplace",
                { raw::RedisModule_CommandFilterArgReplace }.is_some(),
            ),
            ("GetClientId", { raw::RedisModule_GetClientId }.is_some()),
            (
                "InfoAddFieldLongLong",
                { raw::RedisModule_InfoAddFieldLongLong }.is_some(),
            ),
            (
                "RegisterNumericConfig",
                { raw::RedisModule_RegisterNumericConfig }.is_some(),
            ),
            ("LoadConfigs", { raw::RedisModule_LoadConfigs }.is_some()),
            (
                "InfoAddFieldULongLong",
                { raw::RedisModule_InfoAddFieldULongLong }.is_some(),
            ),
            (
                "InfoAddFieldCString",
                { raw::RedisModule_InfoAddFieldCString }.is_some(),
            ),
            (
                "SubscribeToKeyspaceEvents",
                { raw::RedisModule_SubscribeToKeyspaceEvents }.is_some(),
            ),
            (
                "InfoAddSection",
                { raw::RedisModule_InfoAddSection }.is_some(),
            ),
            (
                "FreeServerInfo",
                { raw::RedisModule_FreeServerInfo }.is_some(),
            ),
            (
                "ServerInfoGetFieldUnsigned",
                { raw::RedisModule_ServerInfoGetFieldUnsigned }.is_some(),
            ),
            (
                "ServerInfoGetFieldC",
                { raw::RedisModule_ServerInfoGetFieldC }.is_some(),
            ),
            (
                "GetServerInfo",
                { raw::RedisModule_GetServerInfo }.is_some(),
            ),
            (
                "CommandFilterArgGet",
                { raw::RedisModule_CommandFilterArgGet }.is_some(),
            ),
            (
                "RegisterCommandFilter",
                { raw::RedisModule_RegisterCommandFilter }.is_some(),
            ),
            (
                "RegisterInfoFunc",
                { raw::RedisModule_RegisterInfoFunc }.is_some(),
            ),
            ("GetAbsExpire", { raw::RedisModule_GetAbsExpire }.is_some()),
            ("BlockClient", { raw::RedisModule_BlockClient }.is_some()),
            (
                "UnblockClient",
                { raw::RedisModule_UnblockClient }.is_some(),
            ),
            (
                "SetDisconnectCallback",
                { raw::RedisModule_SetDisconnectCallback }.is_some(),
            ),
            (
                "GetBlockedClientPrivateData",
                { raw::RedisModule_GetBlockedClientPrivateData }.is_some(),
            ),
            (
                "GetBlockedClientHandle",
                { raw::RedisModule_GetBlockedClientHandle }.is_some(),
            ),
            ("CreateTimer", { raw::RedisModule_CreateTimer }.is_some()),
            ("StopTimer", { raw::RedisModule_StopTimer }.is_some()),
            (
                "GetSelectedDb",
                { raw::RedisModule_GetSelectedDb }.is_some(),
            ),
            ("SelectDb", { raw::RedisModule_SelectDb }.is_some()),
            (
                "AvoidReplicaTraffic",
                { raw::RedisModule_AvoidReplicaTraffic }.is_some(),
            ),
            (
                "ReplicateVerbatim",
                { raw::RedisModule_ReplicateVerbatim }.is_some(),
            ),
            (
                "GetDetachedThreadSafeContext",
                { raw::RedisModule_GetDetachedThreadSafeContext }.is_some(),
            ),
            (
                "GetKeyNameFromOptCtx",
                { raw::RedisModule_GetKeyNameFromOptCtx }.is_some(),
            ),
            (
                "GetDbIdFromOptCtx",
                { raw::RedisModule_GetDbIdFromOptCtx }.is_some(),
            ),
            (
                "SubscribeToServerEvent",
                { raw::RedisModule_SubscribeToServerEvent }.is_some(),
            ),
        ]
    };
    present
        .into_iter()
        .filter(|(_, is_there)| !is_there)
        .map(|(name, _)| name)
        .collect()
}
