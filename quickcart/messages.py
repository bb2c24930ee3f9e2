"""The message catalog: every text a user reads, in Indonesian (default) and English.

Workers and the bot render by key; nothing user-facing is written inline elsewhere. Money
parameters arrive as decimal strings and are shown as Rp12.500.
"""

from __future__ import annotations

import html
import logging
import string
from decimal import Decimal, InvalidOperation
from typing import Any

from quickcart.domain.money import format_idr

log = logging.getLogger(__name__)

LANGUAGES = ("id", "en")
MONEY_PARAMS = frozenset({
    "amount", "total", "balance", "needed", "min", "max", "subtotal", "voucher_discount",
    "payment_fee", "total_bill", "unit_price", "price", "revenue", "paid_total",
})

MESSAGES: dict[str, dict[str, str]] = {
    "id": {
        # --- refusals (error.<ShopError code>)
        "error.generic": "Maaf, terjadi kendala. Silakan coba lagi sebentar lagi.",
        "error.insufficient_balance": "Saldo tidak cukup: saldo Anda {balance}, dibutuhkan {needed}.",
        "error.pending_order_exists": "Anda masih punya pesanan {invoice_id} yang belum dibayar"
                                      " ({total}). Selesaikan atau batalkan dulu.",
        "error.pending_deposit_exists": "Anda masih punya deposit {invoice_id} yang belum dibayar.",
        "error.out_of_stock": "Maaf, stok produk ini sedang habis.",
        "error.not_enough_stock": "Stok tidak cukup: tersedia {available}.",
        "error.product_unavailable": "Produk tidak tersedia.",
        "error.product_not_found": "Produk {product_id} tidak ditemukan.",
        "error.product_exists": "Produk dengan ID {product_id} sudah ada.",
        "error.user_banned": "Akun Anda diblokir.",
        "error.user_not_registered": "Ketik /start untuk mulai.",
        "error.invalid_quantity": "Jumlah harus antara 1 dan {max}.",
        "error.invalid_payment_method": "Metode pembayaran tidak dikenal.",
        "error.invalid_price": "Harga tidak valid.",
        "error.invalid_amount": "Nominal tidak valid.",
        "error.voucher_unknown": "Kode voucher {code} tidak dikenal.",
        "error.voucher_used": "Voucher {code} sudah dipakai.",
        "error.voucher_expired": "Voucher {code} sudah kedaluwarsa.",
        "error.voucher_cooldown": "Tunggu {seconds} detik sebelum memakai voucher lagi.",
        "error.voucher_amount_range": "Nilai voucher harus antara {min} dan {max}.",
        "error.voucher_count_range": "Jumlah voucher harus antara 1 dan {max}.",
        "error.deposit_amount_range": "Deposit minimal {min} dan maksimal {max}.",
        "error.payments_unavailable": "Pembayaran sedang tidak tersedia; pesanan {invoice_id}"
                                      " dibatalkan. Silakan coba lagi nanti.",
        "error.no_pending_order": "Tidak ada pesanan yang menunggu pembayaran.",
        "error.not_admin": "Perintah ini khusus admin.",
        "error.stock_unit_in_use": "Stok itu sedang dipesan atau sudah terjual.",
        "error.stock_line_too_long": "Baris {line} terlalu panjang.",
        "error.last_admin": "Tidak bisa: Anda admin terakhir.",
        "error.rate_limited": "Terlalu cepat. Coba lagi sebentar lagi.",
        # --- orders
        "order.awaiting_payment": "🧾 Invoice {invoice_id}\n{product_name} × {quantity}\n"
                                  "Subtotal: {subtotal}\nDiskon: {voucher_discount}\n"
                                  "Biaya: {payment_fee}\nTotal: {total_bill}\n"
                                  "Scan QRIS ini sebelum {expires_at}.",
        "order.paid": "✅ Pembayaran {invoice_id} diterima. Terima kasih!",
        "order.expired": "⌛ Pesanan {invoice_id} kedaluwarsa karena belum dibayar.",
        "order.cancelled": "Pesanan {invoice_id} dibatalkan.",
        "order.delivery": "📦 Pesanan {invoice_id} — {product_names}\n\n{contents}",
        "order.delivery_document": "📦 Pesanan {invoice_id} — {product_names}: isi terlampir.",
        "payment.late_credited": "Pembayaran {invoice_id} masuk setelah kedaluwarsa; {amount}"
                                 " sudah ditambahkan ke saldo Anda.",
        # --- deposits
        "deposit.awaiting_payment": "🧾 Deposit {invoice_id}\nNominal: {amount}\nBiaya: {payment_fee}\n"
                                    "Total: {total_bill}\nScan QRIS ini sebelum {expires_at}.",
        "deposit.paid": "✅ Deposit {invoice_id} sebesar {amount} masuk. Saldo: {balance}.",
        "deposit.expired": "⌛ Deposit {invoice_id} kedaluwarsa.",
        "deposit.cancelled": "Deposit {invoice_id} dibatalkan.",
        # --- buttons
        "button.check_status": "Cek status",
        "button.cancel": "Batalkan",
        # --- admins
        "admin.sales_digest": "📊 Penjualan {start}–{end}\n💰 Dibayar: {paid} pesanan, {paid_total}"
                              "\n🆕 Pesanan QRIS baru: {created}\n⌛ Kedaluwarsa: {expired}"
                              "\nTerakhir dibayar: {latest}",
        "admin.late_payment": "⚠️ Pembayaran terlambat {invoice_id} dari {user_id}: {amount}"
                              " dikreditkan ke saldo",
        "admin.deposit_paid": "💳 Deposit {invoice_id} dari {user_id}: {amount}",
        "admin.gateway_unavailable": "🚨 Gateway pembayaran tidak bisa dihubungi ({invoice_id})",
        "admin.health_changed": "🩺 Status layanan berubah: {changes}",
        # --- refusals of admin and profile commands
        "error.invalid_text": "Teks {field} tidak valid (1–255 karakter).",
        "error.invalid_product_id": "ID produk tidak valid.",
        "error.user_not_found": "Pengguna {user_id} tidak ditemukan.",
        "error.cannot_ban_self": "Anda tidak bisa memblokir diri sendiri.",
        "error.invalid_role": "Peran tidak dikenal.",
        "error.request_id_reused": "Permintaan ini sudah dipakai untuk perubahan lain.",
        "error.invalid_request_id": "Permintaan tidak valid.",
        "error.unknown_field": "Kolom tidak dikenal.",
        "error.invalid_flag": "Nilai tidak valid.",
        "error.stock_unit_not_found": "Stok tidak ditemukan.",
        "error.stock_unit_has_history": "Stok itu punya riwayat pesanan dan tidak bisa dihapus.",
        "error.stock_not_utf8": "Baris {line} bukan teks UTF-8.",
        "error.stock_line_invalid": "Baris {line} tidak valid.",
        "error.stock_csv_invalid": "CSV tidak valid di baris {line}.",
        "error.invalid_upload_id": "Unggahan tidak valid.",
        "error.voucher_days_range": "Masa berlaku voucher tidak valid.",
        "error.invalid_language": "Bahasa tidak dikenal.",
        "error.invalid_email": "Alamat email tidak valid.",
        "error.invalid_whatsapp": "Nomor WhatsApp tidak valid (8–15 angka).",
        "error.email_taken": "Email itu sudah dipakai akun lain.",
        "error.unknown_command": "Perintah tidak dikenal. Ketik /start untuk membuka menu.",
        "error.session_expired": "Sesi sudah berakhir. Kembali ke menu utama.",
        # --- welcome and menu
        "welcome": "👋 Selamat datang di <b>{store_name}</b>, {name}!\n"
                   "👥 Pengguna: {users}\n🧾 Transaksi: {transactions}\n\nPilih menu di bawah.",
        "menu.main": "🏠 Menu utama — pilih di bawah.",
        "kb.list_products": "LIST PRODUK",
        "kb.stock": "STOK",
        "kb.account": "AKUN",
        "kb.contact": "KIRIM PESAN",
        "kb.placeholder": "Ketik ID produk…",
        # --- onboarding
        "onboarding.name": "Boleh tahu nama Anda? (ketik, atau tekan Lewati)",
        "onboarding.whatsapp": "Nomor WhatsApp Anda? (contoh 081234567890, atau Lewati)",
        "onboarding.email": "Alamat email Anda? (atau Lewati)",
        "onboarding.done": "✅ Terima kasih, profil tersimpan.",
        # --- buttons
        "button.categories": "📂 Kategori",
        "button.best_sellers": "🔥 Terlaris",
        "button.all_products": "🛍 Semua Produk",
        "button.back": "⬅️ Kembali",
        "button.menu": "🏠 Menu",
        "button.prev": "◀️",
        "button.next": "▶️",
        "button.page": "{page}/{pages}",
        "button.buy": "🛒 Beli",
        "button.continue": "✅ Lanjut",
        "button.use_voucher": "🎟 Pakai voucher",
        "button.skip": "Lewati",
        "button.pay_qris": "📱 QRIS",
        "button.pay_balance": "💰 SALDO",
        "button.confirm": "✅ Konfirmasi",
        "button.history": "📜 Riwayat",
        "button.deposit": "💳 Deposit",
        "button.edit_profile": "✏️ Ubah profil",
        "button.language": "🌐 Bahasa",
        "button.resend": "📦 Kirim ulang {invoice_id}",
        "button.yes_delete": "Ya, hapus data saya",
        # --- catalog
        "catalog.categories": "📂 Pilih kategori:",
        "catalog.category": "📂 <b>{category}</b> — halaman {page}/{pages}",
        "catalog.best_sellers": "🔥 <b>Terlaris</b> — halaman {page}/{pages}",
        "catalog.all_products": "🛍 <b>Semua produk</b> — halaman {page}/{pages}",
        "catalog.line": "{product_id}. {name} — {price} (stok {stock})",
        "catalog.empty": "Belum ada produk.",
        "catalog.product": "<b>{name}</b> (ID {product_id})\n💰 Harga: {price}\n📦 Stok: {stock}\n"
                           "✅ Terjual: {sold}\n\n{description}",
        "catalog.stock_title": "📦 <b>Stok produk</b>",
        "catalog.stock_line": "{product_id}. {name}: {stock}",
        # --- ordering
        "order.quantity": "<b>{name}</b>\nHarga satuan: {unit_price}\nJumlah: {quantity}\n"
                          "Subtotal: {subtotal}\nStok tersedia: {stock}",
        "order.summary": "🧾 <b>Ringkasan</b>\n{name}\nHarga satuan: {unit_price}\n"
                         "Jumlah: {quantity}\nSubtotal: {subtotal}\nVoucher: {voucher}",
        "order.ask_voucher": "Punya kode voucher?",
        "order.voucher_prompt": "Ketik kode voucher Anda:",
        "order.no_voucher": "-",
        "order.choose_payment": "Pilih metode pembayaran:",
        "order.confirm_balance": "Bayar {subtotal} (sebelum diskon voucher) dengan saldo?"
                                 " Saldo Anda: {balance}.",
        "order.processing": "⏳ Pesanan Anda sedang diproses…",
        "payment.checking": "⏳ Memeriksa pembayaran…",
        "payment.too_many_checks": "Tunggu sebentar sebelum memeriksa lagi.",
        "payment.cancelling": "Membatalkan…",
        # --- account
        "account.profile": "👤 <b>Profil</b>\nID: {user_id}\nNama: {name}\nUsername: {username}\n"
                           "Email: {email}\nWhatsApp: {whatsapp}\nSaldo: {balance}\n"
                           "Bank ID: {bank_id}\nStatus: {role}",
        "account.history": "📜 <b>Riwayat transaksi</b> — halaman {page}/{pages}",
        "account.history_line": "{invoice_id} · {status} · {total} · {date}",
        "account.history_empty": "Belum ada transaksi.",
        "account.deposit_prompt": "Ketik nominal deposit (contoh 50000):",
        "account.deposit_processing": "⏳ Membuat tagihan deposit…",
        "account.resend_queued": "📦 Isi pesanan dikirim ulang.",
        "account.language_set": "✅ Bahasa diubah ke Bahasa Indonesia.",
        "account.choose_language": "🌐 Pilih bahasa / Choose a language:",
        "account.export_caption": "📄 Data Anda di toko ini (JSON).",
        "account.export_queued": "⏳ Menyiapkan data Anda…",
        "account.delete_confirm": "⚠️ Hapus data pribadi Anda? Nama, username, email dan"
                                  " WhatsApp dikosongkan; catatan transaksi tetap disimpan.",
        "account.delete_queued": "⏳ Data Anda sedang dihapus…",
        "account.deleted": "✅ Data pribadi Anda sudah dihapus.",
        # --- contact
        "contact.prompt": "✉️ Ketik pesan untuk admin:",
        "contact.sent": "✅ Pesan terkirim ke admin.",
        "admin.user_message": "✉️ Pesan dari {user_id} ({name}):\n{text}",
        # --- admin commands
        "admin.usage": "Format salah. Gunakan:",
        "usage.add": "<code>/add id|nama|kategori|harga|deskripsi</code>\n"
                     "Contoh: <code>/add 7|Netflix 1 Bulan|Streaming|25000|Akun premium</code>",
        "usage.del": "<code>/del id</code>\nContoh: <code>/del 7</code>",
        "usage.priceress": "<code>/priceress id|harga</code>\nContoh: <code>/priceress 7|20000</code>",
        "usage.addstock": "<code>/addstock id</code> lalu kirim file .txt/.csv\n"
                          "Contoh: <code>/addstock 7</code>",
        "usage.user": "<code>/{command} user_id</code>\nContoh: <code>/{command} 123456789</code>",
        "usage.editbalance": "<code>/editbalance user_id|jumlah</code> (negatif = kurangi)\n"
                             "Contoh: <code>/editbalance 123456789|50000</code>",
        "usage.giveaway": "<code>/giveaway nominal|jumlah</code>\n"
                          "Contoh: <code>/giveaway 5000|10</code>",
        "usage.broadcast": "<code>/broadcast pesan</code>\nContoh: <code>/broadcast Promo hari ini!</code>",
        "menu.keyboard": "⌨️ Menu cepat ada di bawah. Ketik ID produk untuk membukanya.",
        "onboarding.offer": "Lengkapi profil Anda (nama, WhatsApp, email)? Semuanya boleh dilewati.",
        "button.fill_profile": "✏️ Isi profil",
        "admin.queued": "⏳ Diproses…",
        "admin.product_added": "✅ Produk {product_id} ({name}) ditambahkan, harga {price}.",
        "admin.product_deleted": "🗑 Produk {product_id} dihapus dari katalog.",
        "admin.reseller_price_set": "✅ Harga reseller produk {product_id}: {price}.",
        "admin.addstock_prompt": "📤 Kirim file .txt atau .csv berisi stok produk {product_id}"
                                 " (satu per baris).",
        "admin.addstock_bad_file": "File harus berakhiran .txt atau .csv.",
        "admin.stock_imported": "✅ Stok produk {product_id}: {added} ditambahkan,"
                                " {duplicates} duplikat, {blank} baris kosong.",
        "admin.banned": "🚫 Pengguna {user_id} diblokir.",
        "admin.unbanned": "✅ Blokir pengguna {user_id} dibuka.",
        "admin.role_set": "✅ Pengguna {user_id} sekarang {role}.",
        "admin.balance_set": "✅ Saldo pengguna {user_id} sekarang {balance}.",
        "admin.giveaway": "🎁 {count} voucher senilai {amount}:",
        "admin.code_line": "<code>{code}</code>",
        "admin.stats": "📊 <b>Statistik</b>\nPengguna: {users}\nTransaksi lunas: {paid}\n"
                       "Pendapatan hari ini: {revenue}\nPesanan menunggu: {active}",
        "admin.stats_top": "\n🔥 Terlaris:",
        "admin.stats_stock": "\n📦 Sisa stok:",
        "admin.stats_line": "{product_id}. {name}: {count}",
        "admin.info": "👤 <b>{user_id}</b> {name} (@{username})\nEmail: {email}\n"
                      "WhatsApp: {whatsapp}\nBank ID: {bank_id}\nStatus: {role}\n"
                      "Saldo: {balance}\nDiblokir: {banned}\nPesanan: {orders} (lunas {paid})",
        "admin.broadcast_queued": "📣 Siaran dikirim ke {count} pengguna.",
        "broadcast.message": "📣 {text}",
        # --- admin stock, balance, messages and product edits
        "usage.delstock": "<code>/delstock stock_uuid</code>\n"
                          "Contoh: <code>/delstock 0b5f3c1e-7a2d-4c1b-9e8f-1a2b3c4d5e6f</code>",
        "usage.delallstock": "<code>/delallstock id</code>\nContoh: <code>/delallstock 7</code>",
        "usage.exportstock": "<code>/exportstock id</code>\nContoh: <code>/exportstock 7</code>",
        "usage.transfer": "<code>/transfer user_id|jumlah</code>\n"
                          "Contoh: <code>/transfer 123456789|50000</code>",
        "usage.pm": "<code>/pm user_id|pesan</code>\nContoh: <code>/pm 123456789|Halo!</code>",
        "usage.editname": "<code>/editname id|nama</code>\n"
                          "Contoh: <code>/editname 7|Netflix 1 Bulan</code>",
        "usage.editcat": "<code>/editcat id|kategori</code>\n"
                         "Contoh: <code>/editcat 7|Streaming</code>",
        "usage.editprice": "<code>/editprice id|harga</code>\n"
                           "Contoh: <code>/editprice 7|25000</code>",
        "usage.editdesc": "<code>/editdesc id|deskripsi</code>\n"
                          "Contoh: <code>/editdesc 7|Akun premium 30 hari</code>",
        "admin.stock_deleted": "🗑 Stok {stock_id} (produk {product_id}) dihapus.",
        "admin.stock_all_deleted": "🗑 {count} stok belum terjual produk {product_id} dihapus.",
        "admin.stock_exported": "📄 Stok belum terjual produk {product_id}: {count} baris.",
        "admin.transferred": "✅ {amount} ditambahkan ke saldo pengguna {user_id}."
                             " Saldo: {balance}.",
        "admin.pm_sent": "✅ Pesan dikirim ke pengguna {user_id}.",
        "admin.product_updated": "✅ Produk {product_id} diperbarui.\nNama: {name}\n"
                                 "Kategori: {category}\nHarga: {price}\nDeskripsi: {description}",
        "pm.message": "✉️ Pesan dari admin: {text}",
        # --- the QRIS photo after payment / expiry
        "order.qr_paid": "✅ LUNAS — Invoice {invoice_id}\nTotal dibayar: {total}\n"
                         "Dibayar: {paid_at}",
        "order.qr_expired": "⌛ Invoice {invoice_id} kedaluwarsa. QRIS ini tidak berlaku lagi.",
        "order.qr_cancelled": "❌ Invoice {invoice_id} dibatalkan. QRIS ini tidak berlaku lagi.",
        "deposit.qr_paid": "✅ LUNAS — Deposit {invoice_id}\nTotal dibayar: {total}\n"
                           "Dibayar: {paid_at}",
        "deposit.qr_expired": "⌛ Deposit {invoice_id} kedaluwarsa. QRIS ini tidak berlaku lagi.",
        "deposit.qr_cancelled": "❌ Deposit {invoice_id} dibatalkan. QRIS ini tidak berlaku lagi.",
    },
    "en": {
        "error.generic": "Sorry, something went wrong. Please try again shortly.",
        "error.insufficient_balance": "Insufficient balance: you have {balance}, {needed} needed.",
        "error.pending_order_exists": "You still have unpaid order {invoice_id} ({total})."
                                      " Pay or cancel it first.",
        "error.pending_deposit_exists": "You still have unpaid deposit {invoice_id}.",
        "error.out_of_stock": "Sorry, this product is out of stock.",
        "error.not_enough_stock": "Not enough stock: {available} available.",
        "error.product_unavailable": "This product is not available.",
        "error.product_not_found": "Product {product_id} not found.",
        "error.product_exists": "A product with ID {product_id} already exists.",
        "error.user_banned": "Your account is blocked.",
        "error.user_not_registered": "Type /start to begin.",
        "error.invalid_quantity": "Quantity must be between 1 and {max}.",
        "error.invalid_payment_method": "Unknown payment method.",
        "error.invalid_price": "Invalid price.",
        "error.invalid_amount": "Invalid amount.",
        "error.voucher_unknown": "Voucher code {code} is unknown.",
        "error.voucher_used": "Voucher {code} has already been used.",
        "error.voucher_expired": "Voucher {code} has expired.",
        "error.voucher_cooldown": "Wait {seconds} seconds before using another voucher.",
        "error.voucher_amount_range": "Voucher value must be between {min} and {max}.",
        "error.voucher_count_range": "Voucher count must be between 1 and {max}.",
        "error.deposit_amount_range": "Deposits go from {min} to {max}.",
        "error.payments_unavailable": "Payments are unavailable right now; order {invoice_id}"
                                      " was cancelled. Please try again later.",
        "error.no_pending_order": "You have no order awaiting payment.",
        "error.not_admin": "This command is for admins.",
        "error.stock_unit_in_use": "That unit is reserved or sold.",
        "error.stock_line_too_long": "Line {line} is too long.",
        "error.last_admin": "Not possible: you are the last admin.",
        "error.rate_limited": "Too fast. Please try again in a moment.",
        "order.awaiting_payment": "🧾 Invoice {invoice_id}\n{product_name} × {quantity}\n"
                                  "Subtotal: {subtotal}\nDiscount: {voucher_discount}\n"
                                  "Fee: {payment_fee}\nTotal: {total_bill}\n"
                                  "Scan this QRIS before {expires_at}.",
        "order.paid": "✅ Payment for {invoice_id} received. Thank you!",
        "order.expired": "⌛ Order {invoice_id} expired unpaid.",
        "order.cancelled": "Order {invoice_id} was cancelled.",
        "order.delivery": "📦 Order {invoice_id} — {product_names}\n\n{contents}",
        "order.delivery_document": "📦 Order {invoice_id} — {product_names}: see the attached file.",
        "payment.late_credited": "Payment for {invoice_id} arrived after it expired; {amount}"
                                 " was added to your balance.",
        "deposit.awaiting_payment": "🧾 Deposit {invoice_id}\nAmount: {amount}\nFee: {payment_fee}\n"
                                    "Total: {total_bill}\nScan this QRIS before {expires_at}.",
        "deposit.paid": "✅ Deposit {invoice_id} of {amount} received. Balance: {balance}.",
        "deposit.expired": "⌛ Deposit {invoice_id} expired.",
        "deposit.cancelled": "Deposit {invoice_id} was cancelled.",
        "button.check_status": "Check status",
        "button.cancel": "Cancel",
        "admin.sales_digest": "📊 Sales {start}–{end}\n💰 Paid: {paid} orders, {paid_total}"
                              "\n🆕 New QRIS orders: {created}\n⌛ Expired: {expired}"
                              "\nLatest paid: {latest}",
        "admin.late_payment": "⚠️ Late payment {invoice_id} from {user_id}: {amount} credited"
                              " to balance",
        "admin.deposit_paid": "💳 Deposit {invoice_id} from {user_id}: {amount}",
        "admin.gateway_unavailable": "🚨 Payment gateway unreachable ({invoice_id})",
        "admin.health_changed": "🩺 Service health changed: {changes}",
        "error.invalid_text": "Invalid {field} (1–255 characters).",
        "error.invalid_product_id": "Invalid product ID.",
        "error.user_not_found": "User {user_id} not found.",
        "error.cannot_ban_self": "You cannot ban yourself.",
        "error.invalid_role": "Unknown role.",
        "error.request_id_reused": "This request was already used for another change.",
        "error.invalid_request_id": "Invalid request.",
        "error.unknown_field": "Unknown field.",
        "error.invalid_flag": "Invalid value.",
        "error.stock_unit_not_found": "Stock unit not found.",
        "error.stock_unit_has_history": "That unit has order history and cannot be deleted.",
        "error.stock_not_utf8": "Line {line} is not UTF-8 text.",
        "error.stock_line_invalid": "Line {line} is invalid.",
        "error.stock_csv_invalid": "Invalid CSV at line {line}.",
        "error.invalid_upload_id": "Invalid upload.",
        "error.voucher_days_range": "Invalid voucher validity.",
        "error.invalid_language": "Unknown language.",
        "error.invalid_email": "Invalid email address.",
        "error.invalid_whatsapp": "Invalid WhatsApp number (8–15 digits).",
        "error.email_taken": "That email belongs to another account.",
        "error.unknown_command": "Unknown command. Type /start to open the menu.",
        "error.session_expired": "That session has ended. Back to the main menu.",
        "welcome": "👋 Welcome to <b>{store_name}</b>, {name}!\n"
                   "👥 Users: {users}\n🧾 Transactions: {transactions}\n\nPick a menu below.",
        "menu.main": "🏠 Main menu — pick below.",
        "kb.list_products": "PRODUCT LIST",
        "kb.stock": "STOCK",
        "kb.account": "ACCOUNT",
        "kb.contact": "SEND MESSAGE",
        "kb.placeholder": "Type a product ID…",
        "onboarding.name": "What is your name? (type it, or press Skip)",
        "onboarding.whatsapp": "Your WhatsApp number? (e.g. 081234567890, or Skip)",
        "onboarding.email": "Your email address? (or Skip)",
        "onboarding.done": "✅ Thanks, your profile is saved.",
        "button.categories": "📂 Categories",
        "button.best_sellers": "🔥 Best sellers",
        "button.all_products": "🛍 All products",
        "button.back": "⬅️ Back",
        "button.menu": "🏠 Menu",
        "button.prev": "◀️",
        "button.next": "▶️",
        "button.page": "{page}/{pages}",
        "button.buy": "🛒 Buy",
        "button.continue": "✅ Continue",
        "button.use_voucher": "🎟 Use a voucher",
        "button.skip": "Skip",
        "button.pay_qris": "📱 QRIS",
        "button.pay_balance": "💰 BALANCE",
        "button.confirm": "✅ Confirm",
        "button.history": "📜 History",
        "button.deposit": "💳 Top up",
        "button.edit_profile": "✏️ Edit profile",
        "button.language": "🌐 Language",
        "button.resend": "📦 Resend {invoice_id}",
        "button.yes_delete": "Yes, delete my data",
        "catalog.categories": "📂 Pick a category:",
        "catalog.category": "📂 <b>{category}</b> — page {page}/{pages}",
        "catalog.best_sellers": "🔥 <b>Best sellers</b> — page {page}/{pages}",
        "catalog.all_products": "🛍 <b>All products</b> — page {page}/{pages}",
        "catalog.line": "{product_id}. {name} — {price} ({stock} in stock)",
        "catalog.empty": "No products yet.",
        "catalog.product": "<b>{name}</b> (ID {product_id})\n💰 Price: {price}\n📦 Stock: {stock}\n"
                           "✅ Sold: {sold}\n\n{description}",
        "catalog.stock_title": "📦 <b>Product stock</b>",
        "catalog.stock_line": "{product_id}. {name}: {stock}",
        "order.quantity": "<b>{name}</b>\nUnit price: {unit_price}\nQuantity: {quantity}\n"
                          "Subtotal: {subtotal}\nIn stock: {stock}",
        "order.summary": "🧾 <b>Summary</b>\n{name}\nUnit price: {unit_price}\n"
                         "Quantity: {quantity}\nSubtotal: {subtotal}\nVoucher: {voucher}",
        "order.ask_voucher": "Do you have a voucher code?",
        "order.voucher_prompt": "Type your voucher code:",
        "order.no_voucher": "-",
        "order.choose_payment": "Choose a payment method:",
        "order.confirm_balance": "Pay {subtotal} (before any voucher) from your balance?"
                                 " Your balance: {balance}.",
        "order.processing": "⏳ Your order is being processed…",
        "payment.checking": "⏳ Checking the payment…",
        "payment.too_many_checks": "Please wait a moment before checking again.",
        "payment.cancelling": "Cancelling…",
        "account.profile": "👤 <b>Profile</b>\nID: {user_id}\nName: {name}\nUsername: {username}\n"
                           "Email: {email}\nWhatsApp: {whatsapp}\nBalance: {balance}\n"
                           "Bank ID: {bank_id}\nRole: {role}",
        "account.history": "📜 <b>Transaction history</b> — page {page}/{pages}",
        "account.history_line": "{invoice_id} · {status} · {total} · {date}",
        "account.history_empty": "No transactions yet.",
        "account.deposit_prompt": "Type the top-up amount (e.g. 50000):",
        "account.deposit_processing": "⏳ Creating your top-up bill…",
        "account.resend_queued": "📦 Order content resent.",
        "account.language_set": "✅ Language set to English.",
        "account.choose_language": "🌐 Pilih bahasa / Choose a language:",
        "account.export_caption": "📄 Your data at this shop (JSON).",
        "account.export_queued": "⏳ Preparing your data…",
        "account.delete_confirm": "⚠️ Delete your personal data? Name, username, email and"
                                  " WhatsApp are blanked; transaction records are kept.",
        "account.delete_queued": "⏳ Deleting your data…",
        "account.deleted": "✅ Your personal data was deleted.",
        "contact.prompt": "✉️ Type your message to the admins:",
        "contact.sent": "✅ Message sent to the admins.",
        "admin.user_message": "✉️ Message from {user_id} ({name}):\n{text}",
        "admin.usage": "Wrong format. Use:",
        "usage.add": "<code>/add id|name|category|price|description</code>\n"
                     "Example: <code>/add 7|Netflix 1 Month|Streaming|25000|Premium account</code>",
        "usage.del": "<code>/del id</code>\nExample: <code>/del 7</code>",
        "usage.priceress": "<code>/priceress id|price</code>\nExample: <code>/priceress 7|20000</code>",
        "usage.addstock": "<code>/addstock id</code> then send a .txt/.csv file\n"
                          "Example: <code>/addstock 7</code>",
        "usage.user": "<code>/{command} user_id</code>\nExample: <code>/{command} 123456789</code>",
        "usage.editbalance": "<code>/editbalance user_id|amount</code> (negative = debit)\n"
                             "Example: <code>/editbalance 123456789|50000</code>",
        "usage.giveaway": "<code>/giveaway amount|count</code>\n"
                          "Example: <code>/giveaway 5000|10</code>",
        "usage.broadcast": "<code>/broadcast message</code>\nExample: <code>/broadcast Sale today!</code>",
        "menu.keyboard": "⌨️ Quick menu below. Type a product ID to open it.",
        "onboarding.offer": "Complete your profile (name, WhatsApp, email)? Each can be skipped.",
        "button.fill_profile": "✏️ Fill in profile",
        "admin.queued": "⏳ Working…",
        "admin.product_added": "✅ Product {product_id} ({name}) added at {price}.",
        "admin.product_deleted": "🗑 Product {product_id} removed from the catalog.",
        "admin.reseller_price_set": "✅ Reseller price of product {product_id}: {price}.",
        "admin.addstock_prompt": "📤 Send a .txt or .csv file with stock for product {product_id}"
                                 " (one per line).",
        "admin.addstock_bad_file": "The file must end in .txt or .csv.",
        "admin.stock_imported": "✅ Stock of product {product_id}: {added} added,"
                                " {duplicates} duplicates, {blank} blank lines.",
        "admin.banned": "🚫 User {user_id} banned.",
        "admin.unbanned": "✅ User {user_id} unbanned.",
        "admin.role_set": "✅ User {user_id} is now {role}.",
        "admin.balance_set": "✅ Balance of user {user_id} is now {balance}.",
        "admin.giveaway": "🎁 {count} vouchers worth {amount}:",
        "admin.code_line": "<code>{code}</code>",
        "admin.stats": "📊 <b>Statistics</b>\nUsers: {users}\nPaid transactions: {paid}\n"
                       "Revenue today: {revenue}\nOrders awaiting payment: {active}",
        "admin.stats_top": "\n🔥 Best sellers:",
        "admin.stats_stock": "\n📦 Stock left:",
        "admin.stats_line": "{product_id}. {name}: {count}",
        "admin.info": "👤 <b>{user_id}</b> {name} (@{username})\nEmail: {email}\n"
                      "WhatsApp: {whatsapp}\nBank ID: {bank_id}\nRole: {role}\n"
                      "Balance: {balance}\nBanned: {banned}\nOrders: {orders} ({paid} paid)",
        "admin.broadcast_queued": "📣 Broadcast sent to {count} users.",
        "broadcast.message": "📣 {text}",
        # --- admin stock, balance, messages and product edits
        "usage.delstock": "<code>/delstock stock_uuid</code>\n"
                          "Example: <code>/delstock 0b5f3c1e-7a2d-4c1b-9e8f-1a2b3c4d5e6f</code>",
        "usage.delallstock": "<code>/delallstock id</code>\nExample: <code>/delallstock 7</code>",
        "usage.exportstock": "<code>/exportstock id</code>\nExample: <code>/exportstock 7</code>",
        "usage.transfer": "<code>/transfer user_id|amount</code>\n"
                          "Example: <code>/transfer 123456789|50000</code>",
        "usage.pm": "<code>/pm user_id|message</code>\nExample: <code>/pm 123456789|Hello!</code>",
        "usage.editname": "<code>/editname id|name</code>\n"
                          "Example: <code>/editname 7|Netflix 1 Month</code>",
        "usage.editcat": "<code>/editcat id|category</code>\n"
                         "Example: <code>/editcat 7|Streaming</code>",
        "usage.editprice": "<code>/editprice id|price</code>\n"
                           "Example: <code>/editprice 7|25000</code>",
        "usage.editdesc": "<code>/editdesc id|description</code>\n"
                          "Example: <code>/editdesc 7|Premium account, 30 days</code>",
        "admin.stock_deleted": "🗑 Stock unit {stock_id} (product {product_id}) deleted.",
        "admin.stock_all_deleted": "🗑 {count} unsold units of product {product_id} deleted.",
        "admin.stock_exported": "📄 Unsold stock of product {product_id}: {count} lines.",
        "admin.transferred": "✅ {amount} added to the balance of user {user_id}."
                             " Balance: {balance}.",
        "admin.pm_sent": "✅ Message sent to user {user_id}.",
        "admin.product_updated": "✅ Product {product_id} updated.\nName: {name}\n"
                                 "Category: {category}\nPrice: {price}\n"
                                 "Description: {description}",
        "pm.message": "✉️ Message from the admin: {text}",
        # --- the QRIS photo after payment / expiry
        "order.qr_paid": "✅ PAID — Invoice {invoice_id}\nTotal paid: {total}\nPaid: {paid_at}",
        "order.qr_expired": "⌛ Invoice {invoice_id} expired. This QRIS is no longer valid.",
        "order.qr_cancelled": "❌ Invoice {invoice_id} cancelled. This QRIS is no longer valid.",
        "deposit.qr_paid": "✅ PAID — Deposit {invoice_id}\nTotal paid: {total}\n"
                           "Paid: {paid_at}",
        "deposit.qr_expired": "⌛ Deposit {invoice_id} expired. This QRIS is no longer valid.",
        "deposit.qr_cancelled": "❌ Deposit {invoice_id} cancelled. This QRIS is no longer valid.",
    },
}


class _Lenient(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _format_param(name: str, value: Any) -> str:
    if name in MONEY_PARAMS and value is not None:
        try:
            return format_idr(Decimal(str(value)))
        except (InvalidOperation, ValueError):
            return html.escape(str(value))
    return html.escape(str(value))


def render(key: str, language: str = "id", **params: Any) -> str:
    """The text of `key` in `language` (falling back to Indonesian, then a generic apology).

    Parameters are HTML-escaped (messages go out with parse_mode=HTML); a missing parameter
    shows as its placeholder instead of failing, because a worse message beats none.
    """
    catalog = MESSAGES.get(language) or MESSAGES["id"]
    template = catalog.get(key) or MESSAGES["id"].get(key)
    if template is None:
        log.error("message key %s missing from the catalog", key)
        template = catalog["error.generic"]
    values = _Lenient({k: _format_param(k, v) for k, v in params.items()})
    return string.Formatter().vformat(template, (), values)
