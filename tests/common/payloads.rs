//! DUMP payloads (the RDB encoding of one value, as RESTORE and MIGRATE read it): the value's
//! bytes, then the RDB version (2 bytes) and a CRC-64 of everything before it (8 bytes).

/// Redis' CRC-64 (Jones polynomial, reflected, as in its crc64.c).
pub fn crc64(data: &[u8]) -> u64 {
    const REFLECTED_POLY: u64 = 0x95ac_9329_ac4b_c9b5;
    let mut crc = 0u64;
    for &byte in data {
        crc ^= u64::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ REFLECTED_POLY
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// `payload` with its trailing checksum made right again.
pub fn with_checksum(mut payload: Vec<u8>) -> Vec<u8> {
    let body = payload.len() - 8;
    let crc = crc64(&payload[..body]);
    payload[body..].copy_from_slice(&crc.to_le_bytes());
    payload
}

/// The RDB version a payload was written with (RESTORE refuses a newer one than the server's).
pub fn rdb_version(payload: &[u8]) -> u16 {
    let at = payload.len() - 10;
    u16::from_le_bytes([payload[at], payload[at + 1]])
}
